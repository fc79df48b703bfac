"""The structured brief the primary model produces (and the keyword parse reproduces without a model)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

from artisan_common.model import ApiModel

# The ingredient catalog's families (configs/ingredients.yaml); a test keeps the two in step.
NoteFamily = Literal[
    "citrus",
    "floral",
    "woody",
    "fresh",
    "green",
    "fruity",
    "spicy",
    "amber",
    "gourmand",
    "aquatic",
    "musk",
    "herbal",
    "powdery",
    "leather",
]
NOTE_FAMILIES: tuple[NoteFamily, ...] = get_args(NoteFamily)

Style = Literal[
    "fresh", "citrus", "floral", "woody", "oriental", "gourmand", "aquatic", "green", "chypre", "fougere"
]
STYLES: tuple[Style, ...] = get_args(Style)

Language = Literal["ko", "en"]
FamilyWeight = Annotated[float, Field(gt=0, le=1)]
"""A note family's preference weight, in (0, 1] (in the OpenAPI schema too, so clients see the range)."""
BriefSource = Literal["model", "model-retry", "keywords", "cache"]


class Brief(ApiModel):
    """What the user wants, in numbers a formula can be built from."""

    style: Style
    """Overall olfactive style."""
    intensity: float = Field(ge=0, le=1)
    """0 = a whisper, 1 = loud and long-lasting."""
    complexity: float = Field(ge=0, le=1)
    """0 = a few notes, 1 = many layered notes."""
    note_families: dict[NoteFamily, FamilyWeight] = Field(min_length=1, max_length=len(NOTE_FAMILIES))
    """Preference weight (0-1] per note family; at least one family."""
    language: Language = "en"
    """Language of the user's text."""

    def ranked_families(self) -> list[NoteFamily]:
        """Families from the most to the least wanted (ties broken by name, so it is deterministic)."""
        return [f for f, _ in sorted(self.note_families.items(), key=lambda kv: (-kv[1], kv[0]))]
