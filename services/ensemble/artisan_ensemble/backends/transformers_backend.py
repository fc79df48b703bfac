"""A causal LM loaded from a local directory with transformers (never downloads).

Where a model is looked for (``resolve_model_path``): first the directory named by ``source``,

| ``source``                 | directory                                     |
|----------------------------|-----------------------------------------------|
| ``/abs/path``              | ``/abs/path``                                 |
| ``pvc://claim/sub/dir``    | ``<pvc_root>/claim/sub/dir`` (the operator mounts claims there) |
| ``relative/dir``           | ``<models_dir>/relative/dir``                 |

then, inside it, the files of the pinned ``revision``. The pin is enforced: a directory whose
revision cannot be verified is refused (``ModelLoadError``), so a pod never turns ready serving
weights of another revision than the one it reports.

| that directory holds                    | files loaded from    | the revision is verified by          |
|-----------------------------------------|----------------------|--------------------------------------|
| ``snapshots/`` (a hub cache repo folder) | ``snapshots/<sha>/`` | the snapshot's commit sha (below)    |
| a sub-directory named ``<revision>``    | ``<revision>/``      | its name (its ``artisan-revision``   |
|                                         |                      | file, if any, must match too)        |
| an ``artisan-revision`` file (one line) | the directory itself | the file equals the revision         |
| none of these                           | refused              | nothing: loaded only when            |
|                                         |                      | ``ALLOW_UNVERIFIED_REVISION`` is set |

(The setting is ``ARTISAN_ENSEMBLE_ALLOW_UNVERIFIED_REVISION``, default false.) A mismatching
``artisan-revision`` file is refused whatever the setting.

The Hugging Face cache form is what ``huggingface-cli download`` / ``snapshot_download`` write
under ``$HF_HOME/hub``: ``source`` points at the repo folder itself (``models--Qwen--Qwen2.5-7B``;
its name does not matter, ``snapshots/`` does), not at the cache root. ``revision`` is resolved
by ``resolve_hf_snapshot``:

| ``revision``                         | snapshot                                         |
|--------------------------------------|--------------------------------------------------|
| 40 hex chars (a full commit sha)     | ``snapshots/<revision>``, which must exist       |
| a ref name (``main``, ``v1.0``,      | ``snapshots/<sha>`` where ``refs/<revision>``    |
| ``refs/pr/1``) with a ``refs/`` file | holds ``<sha>`` (checked before sha prefixes, as git does) |
| 7 to 39 hex chars                    | the one snapshot whose sha starts with it;       |
|                                      | several: refused as ambiguous                    |
| anything else                        | refused, naming the refs and snapshots present   |
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
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
FULL_SHA = re.compile(r"[0-9a-f]{40}")
SHA_PREFIX = re.compile(r"[0-9a-f]{7,39}")
Device = Literal["auto", "cpu", "cuda"]

hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


class ModelLoadError(RuntimeError):
    pass


def _source_directory(source: str, models_dir: Path | None, pvc_root: Path) -> Path:
    if source.startswith("pvc://"):
        return pvc_root / source.removeprefix("pvc://")
    if Path(source).is_absolute():
        return Path(source)
    if models_dir is not None:
        return models_dir / source
    raise ModelLoadError(f"model source {source!r} is relative but no models directory is configured")


def _is_safe_name(revision: str) -> bool:
    """A revision used as a path below the model directory must stay below it."""
    parts = revision.split("/")
    return bool(revision) and not revision.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def resolve_hf_snapshot(repo: Path, revision: str) -> tuple[Path, str]:
    """The snapshot directory and commit sha of ``revision`` in a hub cache repo folder (the table
    in the module docstring). Raises ``ModelLoadError`` saying what is there when it cannot.

    Hand-written on purpose: huggingface_hub's offline ``snapshot_download(local_files_only=True)``
    needs the folder to be named ``models--<org>--<name>`` under a cache root (a claim mounted at
    the repo folder is not) and knows no sha prefixes; ``scan_cache_dir`` scans the whole root and
    drops a repo as corrupted when any ref (say a newer ``main``) points to a missing snapshot.
    """
    snapshots = repo / "snapshots"
    if FULL_SHA.fullmatch(revision):
        if (snapshots / revision).is_dir():
            return snapshots / revision, revision
        raise ModelLoadError(f"{repo}: commit {revision} is not downloaded ({_hf_contents(repo)})")
    ref = repo / "refs" / revision
    if _is_safe_name(revision) and ref.is_file():
        sha = ref.read_text(encoding="utf-8").strip()
        if FULL_SHA.fullmatch(sha) and (snapshots / sha).is_dir():
            return snapshots / sha, sha
        raise ModelLoadError(f"{repo}: ref {revision!r} points to {sha!r}, which has no snapshot")
    if SHA_PREFIX.fullmatch(revision):
        matches = sorted(p.name for p in _snapshot_dirs(snapshots) if p.name.startswith(revision))
        if len(matches) == 1:
            return snapshots / matches[0], matches[0]
        if matches:
            raise ModelLoadError(
                f"{repo}: revision {revision!r} is ambiguous, it prefixes {', '.join(matches)}; "
                "pin more hex digits"
            )
    raise ModelLoadError(
        f"{repo}: revision {revision!r} is neither a ref nor a downloaded commit ({_hf_contents(repo)})"
    )


def _snapshot_dirs(snapshots: Path) -> list[Path]:
    return [p for p in snapshots.iterdir() if p.is_dir() and FULL_SHA.fullmatch(p.name)]


def _hf_contents(repo: Path) -> str:
    refs_dir = repo / "refs"
    refs = sorted(p.relative_to(refs_dir).as_posix() for p in refs_dir.rglob("*") if p.is_file())
    shas = sorted(p.name for p in _snapshot_dirs(repo / "snapshots"))
    return f"refs: {', '.join(refs) or 'none'}; snapshots: {', '.join(shas) or 'none'}"


@dataclass(frozen=True)
class ModelLocation:
    """Where a pinned model's files are, and how its revision was checked."""

    path: Path
    verified_by: Literal["hf-snapshot", "revision-dir", "marker", "unverified"]
    commit: str | None = None
    """The Hugging Face commit sha when loaded from a hub cache snapshot."""


def resolve_model_path(
    source: str,
    revision: str,
    models_dir: Path | None,
    pvc_root: Path,
    *,
    role: str = "model",
    allow_unverified: bool = False,
) -> ModelLocation:
    """The directory of ``source`` at the pinned ``revision`` (the tables in the module docstring)."""
    path = _source_directory(source, models_dir, pvc_root)
    if not path.is_dir():
        raise ModelLoadError(f"{role} model directory {path} does not exist (source {source!r})")
    if (path / "snapshots").is_dir():
        try:
            snapshot, commit = resolve_hf_snapshot(path, revision)
        except ModelLoadError as error:
            raise ModelLoadError(f"{role} model (source {source!r}): {error}") from None
        return ModelLocation(snapshot, "hf-snapshot", commit)
    verified_by: Literal["revision-dir", "marker", "unverified"] = "unverified"
    if _is_safe_name(revision) and (path / revision).is_dir():
        path, verified_by = path / revision, "revision-dir"
    marker = path / REVISION_FILE
    if marker.is_file():
        found = marker.read_text(encoding="utf-8").strip()
        if found != revision:
            raise ModelLoadError(f"{path}: holds revision {found!r} but the {role} pin asks for {revision!r}")
        verified_by = "marker" if verified_by == "unverified" else verified_by
    if verified_by == "unverified" and not allow_unverified:
        raise ModelLoadError(
            f"{role} model: cannot verify that {path} (source {source!r}) holds the pinned revision "
            f"{revision!r}: it has no {revision!r} sub-directory, no {REVISION_FILE} file and no "
            f"Hugging Face snapshots/. Write the revision into {path / REVISION_FILE}, point the source "
            f"at a hub cache folder (models--<org>--<name>), or set "
            f"ARTISAN_ENSEMBLE_ALLOW_UNVERIFIED_REVISION=true to serve it unchecked"
        )
    return ModelLocation(path, verified_by)


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
        commit: str | None = None,
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
            commit=commit,
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
