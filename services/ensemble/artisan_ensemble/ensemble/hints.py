"""Template creative hints: the creative model's fallback (5-8 evocative lines, in the user's language)."""

from __future__ import annotations

from artisan_ensemble.ensemble.brief import Brief, Language, NoteFamily

_FAMILY_HINTS: dict[Language, dict[NoteFamily, str]] = {
    "en": {
        "citrus": "Sunlight breaking over a bowl of freshly cut citrus",
        "floral": "A garden path at dusk, petals still warm from the day",
        "woody": "The quiet of a cedar forest after rain",
        "fresh": "Crisp linen drying in a cool morning breeze",
        "green": "Crushed leaves and dew on a spring meadow",
        "fruity": "A ripe orchard in late summer",
        "spicy": "A spice market at noon, pepper and cinnamon in the air",
        "amber": "Candlelight on old amber and warm resin",
        "gourmand": "Vanilla pods split open in a quiet kitchen",
        "aquatic": "Salt spray and wind on an empty shore",
        "musk": "Skin after a long embrace, soft and close",
        "herbal": "Lavender fields humming with bees",
        "powdery": "An old vanity table, powder puffs and silk",
        "leather": "A worn leather jacket by a smoky fire",
    },
    "ko": {
        "citrus": "갓 자른 감귤 위로 쏟아지는 햇살",
        "floral": "해 질 녘 정원 길, 아직 따뜻한 꽃잎",
        "woody": "비 온 뒤 삼나무 숲의 고요함",
        "fresh": "서늘한 아침 바람에 마르는 깨끗한 리넨",
        "green": "봄 들판의 이슬 맺힌 풀잎",
        "fruity": "늦여름 잘 익은 과수원",
        "spicy": "한낮의 향신료 시장, 후추와 계피 향",
        "amber": "오래된 호박과 따뜻한 수지 위의 촛불",
        "gourmand": "조용한 부엌에서 갈라진 바닐라 빈",
        "aquatic": "텅 빈 해변의 소금기 어린 바람",
        "musk": "긴 포옹 뒤의 부드러운 살결",
        "herbal": "벌들이 노래하는 라벤더 들판",
        "powdery": "오래된 화장대, 분첩과 실크",
        "leather": "모닥불 곁의 낡은 가죽 재킷",
    },
}

_MOOD_HINTS: dict[Language, tuple[str, ...]] = {
    "en": (
        "A first breath that opens like a window",
        "A heart that lingers the way a good memory does",
        "A trail that stays long after you leave the room",
        "Something familiar, seen in a new light",
        "Quiet confidence rather than a shout",
        "A story told in three acts: top, heart and base",
    ),
    "ko": (
        "창문을 여는 듯한 첫 숨결",
        "좋은 기억처럼 오래 머무는 중심",
        "방을 떠난 뒤에도 남는 잔향",
        "익숙한 것을 새로운 빛으로",
        "외침보다는 조용한 자신감",
        "탑, 미들, 베이스로 이어지는 세 막의 이야기",
    ),
}

MIN_HINTS = 5
MAX_HINTS = 8


def template_hints(brief: Brief) -> list[str]:
    """5-8 hints: one per wanted family (strongest first), topped up with mood lines; deterministic."""
    language = brief.language
    hints = [_FAMILY_HINTS[language][f] for f in brief.ranked_families()][: MAX_HINTS - 2]
    target = max(MIN_HINTS, min(MAX_HINTS, len(hints) + 2))
    for line in _MOOD_HINTS[language]:
        if len(hints) >= target:
            break
        hints.append(line)
    return hints
