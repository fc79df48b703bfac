"""What the service needs from a model backend (implemented in backends/, faked in tests)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


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
    commit: str | None = None
    """The commit sha actually loaded, when known (a hub cache snapshot); ``revision`` is the pin's."""


FinishReason = Literal["stop", "length"]
"""OpenAI's finish_reason: ``stop`` the model ended its answer (EOS), ``length`` a limit cut it."""


@dataclass(frozen=True)
class TokenUsage:
    """Tokens as the model's own tokenizer counts them (OpenAI's ``usage``)."""

    prompt_tokens: int
    """The prompt's input ids, after truncation to the context (what the model actually read)."""
    completion_tokens: int
    """The generated ids, prompt excluded, a final EOS included (as vLLM counts them)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Generation:
    """One finished generation: its text and, where the backend can count, its accounting."""

    text: str
    finish_reason: FinishReason = "stop"
    """A backend that cannot tell returned its whole output: it ended by itself, as far as it says."""
    usage: TokenUsage | None = None
    """None when the backend has no tokenizer to count with (never estimated)."""


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


@runtime_checkable
class CountingGenerator(TextGenerator, Protocol):
    """A backend that also reports token usage and why it stopped (the transformers backend).

    Optional: the service asks ``isinstance(generator, CountingGenerator)`` and, for a plain
    :class:`TextGenerator`, serves ``Generation(text)`` (no usage, ``stop``)."""

    def generate_counted(self, request: GenerationRequest) -> Generation:
        """As ``generate``, with the counts and the finish reason."""
        ...

    def stream_counted(self, request: GenerationRequest) -> Iterator[str | Generation]:
        """As ``stream``, then exactly one :class:`Generation` (the whole text, its counts) last."""
        ...


class FormulaPolicy(Protocol):
    """The trained policy: brief features → one non-negative proportion per catalog ingredient."""

    @property
    def description(self) -> str: ...

    def proportions(self, features: Sequence[float]) -> Mapping[str, float]: ...
