"""What the service needs from a model backend (implemented in backends/, faked in tests)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    max_new_tokens: int
    temperature: float
    top_p: float
    deadline: float
    """time.monotonic() value after which generation must stop (the backend checks it between tokens)."""
    seed: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    role: str
    name: str
    revision: str
    source: str
    device: str
    parameters: int


class TextGenerator(Protocol):
    """A loaded causal LM. Methods block: the service calls them in worker threads."""

    @property
    def info(self) -> ModelInfo: ...

    def generate(self, request: GenerationRequest) -> str:
        """The generated continuation (prompt excluded)."""
        ...

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """The continuation, piece by piece as tokens are produced."""
        ...


class FormulaPolicy(Protocol):
    """The trained policy: brief features → one non-negative proportion per catalog ingredient."""

    @property
    def description(self) -> str: ...

    def proportions(self, features: Sequence[float]) -> Mapping[str, float]: ...
