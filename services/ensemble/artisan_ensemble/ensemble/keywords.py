"""Bilingual keyword dictionary and the deterministic pre-parse built on it.

The same dictionary feeds the prompts (as hints) and builds a complete brief when no model output
can be used, so a user always gets an answer that reflects their words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from artisan_ensemble.ensemble.brief import Brief, Language, NoteFamily, Style


@dataclass(frozen=True)
class Keyword:
    families: dict[NoteFamily, float] = field(default_factory=dict)
    style: Style | None = None
    intensity: float = 0.0
    """Added to the base intensity (negative = softer)."""
    complexity: float = 0.0
    """Added to the base complexity."""


def _kw(
    families: dict[NoteFamily, float] | None = None,
    style: Style | None = None,
    intensity: float = 0.0,
    complexity: float = 0.0,
) -> Keyword:
    return Keyword(families or {}, style, intensity, complexity)


KOREAN_KEYWORDS: dict[str, Keyword] = {
    "상큼한": _kw({"citrus": 1.0, "fresh": 0.7}, "citrus"),
    "상큼": _kw({"citrus": 1.0, "fresh": 0.7}, "citrus"),
    "시트러스": _kw({"citrus": 1.0}, "citrus"),
    "레몬": _kw({"citrus": 1.0}, "citrus"),
    "오렌지": _kw({"citrus": 0.9, "fruity": 0.4}, "citrus"),
    "자몽": _kw({"citrus": 0.9}, "citrus"),
    "귤": _kw({"citrus": 0.9, "fruity": 0.3}, "citrus"),
    "베르가못": _kw({"citrus": 0.9}, "citrus"),
    "꽃향기": _kw({"floral": 1.0}, "floral"),
    "꽃": _kw({"floral": 0.9}, "floral"),
    "플로럴": _kw({"floral": 1.0}, "floral"),
    "장미": _kw({"floral": 1.0}, "floral"),
    "재스민": _kw({"floral": 1.0}, "floral"),
    "자스민": _kw({"floral": 1.0}, "floral"),
    "라벤더": _kw({"herbal": 0.8, "floral": 0.6}, "fougere"),
    "벚꽃": _kw({"floral": 0.9, "powdery": 0.3}, "floral"),
    "우디한": _kw({"woody": 1.0}, "woody"),
    "우디": _kw({"woody": 1.0}, "woody"),
    "나무": _kw({"woody": 0.9}, "woody"),
    "숲": _kw({"woody": 0.8, "green": 0.7}, "woody"),
    "샌달우드": _kw({"woody": 1.0}, "woody"),
    "삼나무": _kw({"woody": 0.9}, "woody"),
    "시더": _kw({"woody": 0.9}, "woody"),
    "신선한": _kw({"fresh": 1.0}, "fresh"),
    "청량한": _kw({"fresh": 1.0, "aquatic": 0.5}, "fresh"),
    "시원한": _kw({"fresh": 0.9, "aquatic": 0.6}, "fresh"),
    "깨끗한": _kw({"fresh": 0.8, "musk": 0.5}, "fresh"),
    "바다": _kw({"aquatic": 1.0, "fresh": 0.6}, "aquatic"),
    "바다향": _kw({"aquatic": 1.0, "fresh": 0.6}, "aquatic"),
    "마린": _kw({"aquatic": 1.0}, "aquatic"),
    "풀향": _kw({"green": 1.0}, "green"),
    "풀잎": _kw({"green": 1.0}, "green"),
    "초록": _kw({"green": 0.8}, "green"),
    "녹차": _kw({"green": 0.9, "herbal": 0.4}, "green"),
    "과일": _kw({"fruity": 1.0}, None),
    "달콤한": _kw({"gourmand": 0.9, "fruity": 0.4}, "gourmand"),
    "달달한": _kw({"gourmand": 0.9}, "gourmand"),
    "바닐라": _kw({"gourmand": 1.0, "amber": 0.4}, "gourmand"),
    "초콜릿": _kw({"gourmand": 1.0}, "gourmand"),
    "커피": _kw({"gourmand": 0.8, "woody": 0.3}, "gourmand"),
    "스파이시": _kw({"spicy": 1.0}, "oriental"),
    "매운": _kw({"spicy": 0.9}, "oriental"),
    "계피": _kw({"spicy": 1.0, "gourmand": 0.3}, "oriental"),
    "후추": _kw({"spicy": 0.9}, "oriental"),
    "앰버": _kw({"amber": 1.0}, "oriental"),
    "따뜻한": _kw({"amber": 0.8, "spicy": 0.4}, "oriental"),
    "포근한": _kw({"musk": 0.8, "powdery": 0.6}, None, -0.1),
    "머스크": _kw({"musk": 1.0}, None),
    "파우더리": _kw({"powdery": 1.0}, "floral"),
    "가죽": _kw({"leather": 1.0}, "chypre"),
    "스모키": _kw({"woody": 0.8, "leather": 0.6}, "woody"),
    "허브": _kw({"herbal": 1.0}, "green"),
    "민트": _kw({"herbal": 0.8, "fresh": 0.8}, "fresh"),
    "이끼": _kw({"green": 0.6, "woody": 0.5}, "chypre"),
    "강한": _kw(intensity=0.3),
    "진한": _kw(intensity=0.3),
    "강렬한": _kw(intensity=0.4),
    "은은한": _kw(intensity=-0.3),
    "가벼운": _kw(intensity=-0.3),
    "부드러운": _kw(intensity=-0.2),
    "복잡한": _kw(complexity=0.3),
    "풍부한": _kw(complexity=0.3, intensity=0.1),
    "심플한": _kw(complexity=-0.3),
    "단순한": _kw(complexity=-0.3),
}

ENGLISH_KEYWORDS: dict[str, Keyword] = {
    "citrus": _kw({"citrus": 1.0}, "citrus"),
    "citrusy": _kw({"citrus": 1.0}, "citrus"),
    "zesty": _kw({"citrus": 1.0, "fresh": 0.6}, "citrus"),
    "lemon": _kw({"citrus": 1.0}, "citrus"),
    "orange": _kw({"citrus": 0.9, "fruity": 0.4}, "citrus"),
    "bergamot": _kw({"citrus": 0.9}, "citrus"),
    "grapefruit": _kw({"citrus": 0.9}, "citrus"),
    "floral": _kw({"floral": 1.0}, "floral"),
    "flower": _kw({"floral": 0.9}, "floral"),
    "flowers": _kw({"floral": 0.9}, "floral"),
    "rose": _kw({"floral": 1.0}, "floral"),
    "jasmine": _kw({"floral": 1.0}, "floral"),
    "lavender": _kw({"herbal": 0.8, "floral": 0.6}, "fougere"),
    "woody": _kw({"woody": 1.0}, "woody"),
    "wood": _kw({"woody": 0.9}, "woody"),
    "forest": _kw({"woody": 0.8, "green": 0.7}, "woody"),
    "sandalwood": _kw({"woody": 1.0}, "woody"),
    "cedar": _kw({"woody": 0.9}, "woody"),
    "fresh": _kw({"fresh": 1.0}, "fresh"),
    "clean": _kw({"fresh": 0.8, "musk": 0.5}, "fresh"),
    "cool": _kw({"fresh": 0.9, "aquatic": 0.5}, "fresh"),
    "ocean": _kw({"aquatic": 1.0, "fresh": 0.6}, "aquatic"),
    "sea": _kw({"aquatic": 1.0, "fresh": 0.6}, "aquatic"),
    "marine": _kw({"aquatic": 1.0}, "aquatic"),
    "aquatic": _kw({"aquatic": 1.0}, "aquatic"),
    "green": _kw({"green": 1.0}, "green"),
    "grass": _kw({"green": 1.0}, "green"),
    "tea": _kw({"green": 0.8, "herbal": 0.4}, "green"),
    "fruity": _kw({"fruity": 1.0}, None),
    "fruit": _kw({"fruity": 1.0}, None),
    "sweet": _kw({"gourmand": 0.9, "fruity": 0.4}, "gourmand"),
    "vanilla": _kw({"gourmand": 1.0, "amber": 0.4}, "gourmand"),
    "chocolate": _kw({"gourmand": 1.0}, "gourmand"),
    "coffee": _kw({"gourmand": 0.8, "woody": 0.3}, "gourmand"),
    "spicy": _kw({"spicy": 1.0}, "oriental"),
    "cinnamon": _kw({"spicy": 1.0, "gourmand": 0.3}, "oriental"),
    "pepper": _kw({"spicy": 0.9}, "oriental"),
    "amber": _kw({"amber": 1.0}, "oriental"),
    "warm": _kw({"amber": 0.8, "spicy": 0.4}, "oriental"),
    "cozy": _kw({"musk": 0.8, "powdery": 0.6}, None, -0.1),
    "musk": _kw({"musk": 1.0}, None),
    "musky": _kw({"musk": 1.0}, None),
    "powdery": _kw({"powdery": 1.0}, "floral"),
    "leather": _kw({"leather": 1.0}, "chypre"),
    "smoky": _kw({"woody": 0.8, "leather": 0.6}, "woody"),
    "smoke": _kw({"woody": 0.8, "leather": 0.5}, "woody"),
    "herbal": _kw({"herbal": 1.0}, "green"),
    "mint": _kw({"herbal": 0.8, "fresh": 0.8}, "fresh"),
    "moss": _kw({"green": 0.6, "woody": 0.5}, "chypre"),
    "strong": _kw(intensity=0.3),
    "intense": _kw(intensity=0.4),
    "bold": _kw(intensity=0.3),
    "subtle": _kw(intensity=-0.3),
    "light": _kw(intensity=-0.3),
    "soft": _kw(intensity=-0.2),
    "complex": _kw(complexity=0.3),
    "layered": _kw(complexity=0.3),
    "rich": _kw(complexity=0.3, intensity=0.1),
    "simple": _kw(complexity=-0.3),
    "minimal": _kw(complexity=-0.3),
}

_KOREAN_TERMS_LONGEST_FIRST: tuple[str, ...] = tuple(sorted(KOREAN_KEYWORDS, key=len, reverse=True))
"""Sorted once at import: the pre-parse runs on every request."""
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LATIN_WORD = re.compile(r"[a-z]+")
_DEFAULT_FAMILIES: dict[NoteFamily, float] = {"fresh": 0.6, "floral": 0.5, "musk": 0.4}
BASE_INTENSITY = 0.5
BASE_COMPLEXITY = 0.5


def normalize_text(text: str) -> str:
    """Case- and whitespace-insensitive form of a request (the cache key's text part)."""
    return " ".join(text.lower().split())


def detect_language(text: str) -> Language:
    """Korean when Hangul makes up a noticeable part of the letters, else English."""
    hangul = len(_HANGUL.findall(text))
    letters = sum(ch.isalpha() for ch in text)
    return "ko" if letters and hangul / letters >= 0.2 else "en"


@dataclass(frozen=True)
class KeywordMatch:
    terms: tuple[str, ...]
    brief: Brief


def _korean_terms(text: str) -> list[str]:
    # Korean attaches particles to words (바다향이, 꽃향기를), so match by containment, longest
    # term first, and blank out what matched so 상큼 does not count again inside 상큼한.
    found: list[str] = []
    remaining = text
    for term in _KOREAN_TERMS_LONGEST_FIRST:
        if term in remaining:
            found.append(term)
            remaining = remaining.replace(term, " ")
    return found


def describe_term(term: str) -> str:
    """What a dictionary hit means, for the prompt's hint line: ``상큼한→citrus,fresh``,
    ``strong→intensity+0.3``, ``simple→complexity-0.3``."""
    entry = KOREAN_KEYWORDS.get(term) or ENGLISH_KEYWORDS.get(term)
    if entry is None:
        return term
    parts: list[str] = [f for f, _ in sorted(entry.families.items(), key=lambda kv: (-kv[1], kv[0]))]
    if not parts and entry.style is not None:
        parts.append(entry.style)
    if entry.intensity:
        parts.append(f"intensity{entry.intensity:+.1f}")
    if entry.complexity:
        parts.append(f"complexity{entry.complexity:+.1f}")
    return f"{term}→{','.join(parts)}" if parts else term


def keyword_parse(text: str, language: Language | None = None) -> KeywordMatch:
    """A complete, valid brief from dictionary hits alone (deterministic: same text, same brief).

    ``language`` is the brief's language when the caller already resolved it (else detected)."""
    normalized = normalize_text(text)
    terms = _korean_terms(normalized)
    entries = [KOREAN_KEYWORDS[t] for t in terms]
    for word in _LATIN_WORD.findall(normalized):
        if word in ENGLISH_KEYWORDS and word not in terms:
            terms.append(word)
            entries.append(ENGLISH_KEYWORDS[word])
    families: dict[NoteFamily, float] = {}
    styles: dict[Style, float] = {}
    intensity, complexity = BASE_INTENSITY, BASE_COMPLEXITY
    for entry in entries:
        for family, weight in entry.families.items():
            families[family] = max(families.get(family, 0.0), weight)
        if entry.style is not None:
            styles[entry.style] = styles.get(entry.style, 0.0) + max(entry.families.values(), default=1.0)
        intensity += entry.intensity
        complexity += entry.complexity
    if not families:
        families = dict(_DEFAULT_FAMILIES)
    # More distinct families asked for means a more complex composition.
    complexity += 0.05 * max(0, len(families) - 2)
    style: Style = max(sorted(styles), key=lambda s: styles[s]) if styles else "fresh"
    brief = Brief(
        style=style,
        intensity=round(min(1.0, max(0.0, intensity)), 3),
        complexity=round(min(1.0, max(0.0, complexity)), 3),
        note_families={f: round(w, 3) for f, w in sorted(families.items())},
        language=language or detect_language(text),
    )
    return KeywordMatch(tuple(terms), brief)
