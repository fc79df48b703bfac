"""Prompt templates per role and mode, in Korean and English.

fast: short and literal; balanced: full context; creative: deep interpretation; every role has each
mode in both languages. Keyword hits from the dictionary are given with what they mean
(``상큼한→citrus,fresh``) so even a small model is steered toward the right families.
"""

from __future__ import annotations

import json

from artisan_common.serving import Mode
from artisan_ensemble.ensemble.brief import NOTE_FAMILIES, STYLES, Brief, Language
from artisan_ensemble.ensemble.keywords import describe_term

_SCHEMA_HINT = (
    '{"style": one of ' + "/".join(STYLES) + ', "intensity": 0-1, "complexity": 0-1, '
    '"noteFamilies": {family: weight 0-1}} with families from ' + ", ".join(NOTE_FAMILIES)
)

_BRIEF_INTRO: dict[Language, dict[Mode, str]] = {
    "en": {
        "fast": "Turn the request into a fragrance brief. Answer with JSON only.",
        "balanced": (
            "You are a perfumer's assistant. Read the client's request carefully, weigh every detail "
            "(mood, season, occasion, strength) and write a fragrance brief. Answer with JSON only."
        ),
        "creative": (
            "You are a master perfumer. Interpret the client's request deeply: the images, memories and "
            "emotions behind the words, then distil them into a fragrance brief. Answer with JSON only."
        ),
    },
    "ko": {
        "fast": "요청을 향수 브리프로 바꾸세요. JSON만 답하세요.",
        "balanced": (
            "당신은 조향사의 조수입니다. 고객의 요청(분위기, 계절, 상황, 강도)을 꼼꼼히 읽고 "
            "향수 브리프를 작성하세요. JSON만 답하세요."
        ),
        "creative": (
            "당신은 마스터 조향사입니다. 고객의 말 뒤에 있는 이미지와 기억, 감정을 깊이 해석하여 "
            "향수 브리프로 정리하세요. JSON만 답하세요."
        ),
    },
}

_STRICT_RETRY: dict[Language, str] = {
    "en": "Your previous answer was not valid JSON. Output exactly one JSON object and nothing else.",
    "ko": "이전 답변이 올바른 JSON이 아니었습니다. JSON 객체 하나만 출력하세요.",
}


_HINT_LABEL: dict[Language, str] = {"en": "Keyword hints", "ko": "키워드 힌트"}
_REQUEST_LABEL: dict[Language, str] = {"en": "Request", "ko": "요청"}
_BRIEF_LABEL: dict[Language, str] = {"en": "Brief", "ko": "브리프"}


def keyword_hint_line(language: Language, keyword_terms: tuple[str, ...]) -> str:
    """The dictionary's reading of the request, e.g. ``Keyword hints: 상큼한→citrus,fresh; 레몬→citrus``:
    the mapping steers a small model, where repeating the user's words would add nothing."""
    if not keyword_terms:
        return ""
    return f"{_HINT_LABEL[language]}: {'; '.join(describe_term(t) for t in keyword_terms)}\n"


def brief_prompt(
    text: str, mode: Mode, language: Language, keyword_terms: tuple[str, ...], retry: bool = False
) -> str:
    intro = _BRIEF_INTRO[language][mode]
    hints = keyword_hint_line(language, keyword_terms)
    strict = _STRICT_RETRY[language] + "\n" if retry else ""
    return f"{strict}{intro}\nSchema: {_SCHEMA_HINT}\n{hints}{_REQUEST_LABEL[language]}: {text}\nJSON:"


_VALIDATOR_SCHEMA = '{"valid": true|false, "issues": [strings]}'
_VALIDATOR_INTRO: dict[Language, dict[Mode, str]] = {
    "en": {
        "fast": "Is this fragrance brief valid for the request? Answer with JSON only:",
        "balanced": (
            "Check this fragrance brief against the request: schema, units (0-1), IFRA safety and "
            "consistency. Answer with JSON only:"
        ),
        "creative": (
            "You review briefs for a master perfumer. Check the brief against the request: schema, "
            "units (0-1), IFRA safety, and whether style, strength and note families fit what the client "
            "means, not only what they say. Answer with JSON only:"
        ),
    },
    "ko": {
        "fast": "이 향수 브리프가 요청에 맞습니까? JSON만 답하세요:",
        "balanced": (
            "이 향수 브리프를 요청과 대조해 검사하세요: 스키마, 단위(0-1), IFRA 안전성, 일관성. "
            "JSON만 답하세요:"
        ),
        "creative": (
            "당신은 마스터 조향사의 브리프 검토자입니다. 스키마, 단위(0-1), IFRA 안전성, 그리고 스타일과 "
            "강도, 향 계열이 고객의 말뿐 아니라 의도에 맞는지 검사하세요. JSON만 답하세요:"
        ),
    },
}


def validator_prompt(
    text: str, brief: Brief, mode: Mode = "balanced", language: Language | None = None
) -> str:
    """The validator's prompt in the brief's language (or ``language``), worded for the mode."""
    lang = language or brief.language
    return (
        f"{_VALIDATOR_INTRO[lang][mode]} {_VALIDATOR_SCHEMA}\n"
        f"{_REQUEST_LABEL[lang]}: {text}\n"
        f"{_BRIEF_LABEL[lang]}: {json.dumps(brief.to_wire(), ensure_ascii=False)}\nJSON:"
    )


_CREATIVE_ASK: dict[Language, dict[Mode, str]] = {
    "en": {
        "fast": "Write 5-8 short scent hints as a JSON array of strings.",
        "balanced": "Write 5-8 evocative scent hints that fit the brief, as a JSON array of strings.",
        "creative": (
            "Write 5-8 evocative scent hints: images, places and memories the brief calls up, "
            "as a JSON array of strings."
        ),
    },
    "ko": {
        "fast": "짧은 향 힌트 5-8개를 JSON 문자열 배열로 쓰세요.",
        "balanced": "브리프에 맞는 감성적인 향 힌트 5-8개를 JSON 문자열 배열로 쓰세요.",
        "creative": (
            "브리프가 떠올리게 하는 이미지와 장소, 기억을 담은 감성적인 향 힌트 5-8개를 "
            "JSON 문자열 배열로 쓰세요."
        ),
    },
}


def creative_prompt(text: str, brief: Brief, language: Language, mode: Mode = "creative") -> str:
    return (
        f"{_CREATIVE_ASK[language][mode]}\n{_REQUEST_LABEL[language]}: {text}\n"
        f"{_BRIEF_LABEL[language]}: {json.dumps(brief.to_wire(), ensure_ascii=False)}\nJSON:"
    )
