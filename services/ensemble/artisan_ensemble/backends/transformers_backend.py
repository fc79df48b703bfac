"""A causal LM loaded from a local directory with transformers (never downloads).

Where a model is looked for (``resolve_model_path``):

| ``source``                 | directory                                     |
|----------------------------|-----------------------------------------------|
| ``/abs/path``              | ``/abs/path``                                 |
| ``pvc://claim/sub/dir``    | ``<pvc_root>/claim/sub/dir`` (the operator mounts claims there) |
| ``relative/dir``           | ``<models_dir>/relative/dir``                 |

If that directory has a sub-directory named after the pinned revision, it is used. If it holds an
``artisan-revision`` file, its content must equal the pinned revision (a mismatch fails loading, so
the pod never turns ready serving the wrong weights).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from transformers.utils import logging as hf_logging

from artisan_ensemble.ensemble.ports import (
    FinishReason,
    Generation,
    GenerationRequest,
    ModelInfo,
    TokenUsage,
)

# transformers' own annotations are partial and change between releases: use it untyped here.
hf: Any = transformers

REVISION_FILE = "artisan-revision"
Device = Literal["auto", "cpu", "cuda"]

hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


class ModelLoadError(RuntimeError):
    pass


def resolve_model_path(source: str, revision: str, models_dir: Path | None, pvc_root: Path) -> Path:
    if source.startswith("pvc://"):
        path = pvc_root / source.removeprefix("pvc://")
    elif Path(source).is_absolute():
        path = Path(source)
    elif models_dir is not None:
        path = models_dir / source
    else:
        raise ModelLoadError(f"model source {source!r} is relative but no models directory is configured")
    if (path / revision).is_dir():
        path = path / revision
    if not path.is_dir():
        raise ModelLoadError(f"model directory {path} does not exist (source {source!r})")
    marker = path / REVISION_FILE
    if marker.is_file():
        found = marker.read_text(encoding="utf-8").strip()
        if found != revision:
            raise ModelLoadError(f"{path}: holds revision {found!r} but the pin asks for {revision!r}")
    return path


class _Deadline(hf.StoppingCriteria):  # type: ignore[misc]
    """Stops generation between tokens once the request's deadline has passed (frees the worker)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        done = time.monotonic() >= self.deadline
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


def finish_reason(generated: Sequence[int], eos_ids: Collection[int]) -> FinishReason:
    """Why a generation ended, from its new token ids: only an EOS means the model finished.

    | generated ids | EOS ids  | reason | why                                                   |
    |---------------|----------|--------|-------------------------------------------------------|
    | [5, 9, 2]     | {2}      | stop   | the model ended its answer                            |
    | [2]           | {2}      | stop   | an empty answer is still a finished one               |
    | [5, 9, 7]     | {2}      | length | max_new_tokens cut it: the answer is incomplete       |
    | [5, 9, 7]     | {2, 7}   | stop   | any EOS id (a generation config may list several)    |
    | [5]           | {2}      | length | the deadline cut it before the budget: incomplete too |
    | []            | {2}      | length | nothing generated before a limit                      |
    """
    return "stop" if generated and generated[-1] in eos_ids else "length"


def _eos_ids(*values: object) -> frozenset[int]:
    """EOS ids from the tokenizer and the generation config (an int, a list of ints, or None)."""
    ids: set[int] = set()
    for value in values:
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(v for v in value if isinstance(v, int))
    return frozenset(ids)


def pick_device(preference: Device) -> str:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


class TransformersGenerator:
    def __init__(
        self,
        role: str,
        name: str,
        path: Path,
        revision: str,
        *,
        source: str | None = None,
        device: Device = "auto",
        quantization: Literal["none", "8bit", "4bit"] = "none",
    ) -> None:
        self.role = role
        self.path = path
        self.device = pick_device(device)
        kwargs: dict[str, Any] = {"local_files_only": True}
        if self.device == "cuda":
            kwargs["dtype"] = torch.bfloat16
            if quantization in ("8bit", "4bit"):
                kwargs["quantization_config"] = hf.BitsAndBytesConfig(
                    load_in_8bit=quantization == "8bit", load_in_4bit=quantization == "4bit"
                )
                kwargs["device_map"] = "auto"
        try:
            self.tokenizer: Any = hf.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model: Any = hf.AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"{role} model at {path}: {error}") from error
        if "device_map" not in kwargs:
            self.model.to(self.device)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        generation_config = getattr(self.model, "generation_config", None)
        self.eos_ids = _eos_ids(self.tokenizer.eos_token_id, getattr(generation_config, "eos_token_id", None))
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self._info = ModelInfo(
            role=role,
            name=name,
            revision=revision,
            source=source or str(path),
            device=self.device,
            parameters=sum(p.numel() for p in self.model.parameters()),
        )
        # Tokenizers are not safe to share between threads while encoding; models are in inference.
        self._tokenizer_lock = threading.Lock()

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _inputs(self, request: GenerationRequest) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        budget = max(1, min(request.max_new_tokens, self.max_positions // 2))
        with self._tokenizer_lock:
            encoded = self.tokenizer(
                request.prompt, return_tensors="pt", truncation=True, max_length=self.max_positions - budget
            )
        inputs = {k: v.to(self.model.device) for k, v in encoded.items()}
        sampling = request.temperature > 0
        options: dict[str, Any] = {
            "max_new_tokens": budget,
            "do_sample": sampling,
            "pad_token_id": self.tokenizer.pad_token_id,
            "stopping_criteria": hf.StoppingCriteriaList([_Deadline(request.deadline)]),
        }
        if sampling:
            options |= {"temperature": request.temperature, "top_p": request.top_p}
        return inputs, options

    def generate(self, request: GenerationRequest) -> str:
        return self.generate_counted(request).text

    def generate_counted(self, request: GenerationRequest) -> Generation:
        inputs, options = self._inputs(request)
        if request.seed is not None:
            torch.manual_seed(request.seed)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **options)
        return self._counted(inputs, output[0])

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        for item in self.stream_counted(request):
            if isinstance(item, str):
                yield item

    def stream_counted(self, request: GenerationRequest) -> Iterator[str | Generation]:
        inputs, options = self._inputs(request)
        remaining = max(0.001, request.deadline - time.monotonic())
        streamer = hf.TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=remaining
        )
        outputs: list[torch.Tensor] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                if request.seed is not None:
                    torch.manual_seed(request.seed)
                with torch.inference_mode():
                    outputs.append(self.model.generate(**inputs, **options, streamer=streamer))
            except BaseException as error:  # surfaced to the reader below
                errors.append(error)
                streamer.end()

        worker = threading.Thread(target=run, name=f"artisan-stream-{self.role}", daemon=True)
        worker.start()
        pieces: list[str] = []
        for piece in streamer:
            if piece:
                pieces.append(piece)
                yield piece
        worker.join(timeout=max(0.0, request.deadline - time.monotonic()) + 1.0)
        if errors:
            raise errors[0]
        if not outputs:  # the streamer ended but generate() has not returned its ids
            raise TimeoutError(f"{self.role} generation did not finish by its deadline")
        yield self._counted(inputs, outputs[0][0], "".join(pieces))

    def _counted(
        self, inputs: dict[str, torch.Tensor], sequence: torch.Tensor, text: str | None = None
    ) -> Generation:
        """The accounting of one generated ``sequence`` (prompt ids first, as generate returns it)."""
        prompt_tokens = int(inputs["input_ids"].shape[1])
        new_ids: list[int] = [int(i) for i in sequence[prompt_tokens:].tolist()]
        if text is None:
            with self._tokenizer_lock:
                text = str(self.tokenizer.decode(new_ids, skip_special_tokens=True))
        return Generation(text, finish_reason(new_ids, self.eos_ids), TokenUsage(prompt_tokens, len(new_ids)))
