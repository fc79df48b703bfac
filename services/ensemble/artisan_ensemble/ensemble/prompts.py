"""Prompt templates per role and mode, in Korean and English.

fast: short and literal; balanced: full context; creative: deep interpretation. Keyword hits from
the dictionary are included so even a small model is steered toward the right families.
"""

from __future__ import annotations

import json

from artisan_common.serving import Mode
from artisan_ensemble.ensemble.brief import NOTE_FAMILIES, STYLES, Brief, Language

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


def brief_prompt(
    text: str, mode: Mode, language: Language, keyword_terms: tuple[str, ...], retry: bool = False
) -> str:
    intro = _BRIEF_INTRO[language][mode]
    hints = f"Keyword hints: {', '.join(keyword_terms)}\n" if keyword_terms else ""
    strict = _STRICT_RETRY[language] + "\n" if retry else ""
    return f"{strict}{intro}\nSchema: {_SCHEMA_HINT}\n{hints}Request: {text}\nJSON:"


def validator_prompt(text: str, brief: Brief) -> str:
    return (
        "Check this fragrance brief against the request: schema, units (0-1), IFRA safety and "
        'consistency. Answer with JSON only: {"valid": true|false, "issues": [strings]}\n'
        f"Request: {text}\nBrief: {json.dumps(brief.to_wire(), ensure_ascii=False)}\nJSON:"
    )


def creative_prompt(text: str, brief: Brief, language: Language) -> str:
    ask = (
        "5-8개의 감성적인 향 힌트를 JSON 문자열 배열로 쓰세요."
        if language == "ko"
        else "Write 5-8 evocative scent hints as a JSON array of strings."
    )
    return f"{ask}\nRequest: {text}\nBrief: {json.dumps(brief.to_wire(), ensure_ascii=False)}\nJSON:"
