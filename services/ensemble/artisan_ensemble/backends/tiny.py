"""Tiny random primary/validator/creative models with a byte-level BPE tokenizer, built locally.

For tests, the sandbox and benchmarks: about 0.1 M parameters each, no download. Their output is
garbage, which is exactly what exercises the service's fallbacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from artisan_ensemble.backends.transformers_backend import REVISION_FILE
from artisan_ensemble.ensemble.keywords import ENGLISH_KEYWORDS, KOREAN_KEYWORDS
from artisan_ensemble.ensemble.prompts import brief_prompt

TINY_REVISION = "tiny-1"
EOS = "<|endoftext|>"
PAD = "<|pad|>"
hf: Any = transformers  # untyped use, as in transformers_backend
TINY_MODELS = {"primary": "qwen", "validator": "mistral", "creative": "llama"}


def _corpus() -> list[str]:
    words = [*KOREAN_KEYWORDS, *ENGLISH_KEYWORDS]
    samples = [
        brief_prompt("상큼한 꽃향기 향수", "fast", "ko", ("상큼한", "꽃향기")),
        brief_prompt("a fresh woody scent for summer", "balanced", "en", ("fresh", "woody")),
        json.dumps({"style": "woody", "intensity": 0.6, "complexity": 0.4, "noteFamilies": {"woody": 0.9}}),
        json.dumps({"valid": True, "issues": []}),
        json.dumps(["Salt spray on an empty shore", "비 온 뒤 삼나무 숲"], ensure_ascii=False),
    ]
    return [" ".join(words), *samples] * 4


def build_tokenizer(vocab_size: int = 512) -> Any:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return hf.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, pad_token=PAD)


def _config(role: str, vocab: int, eos: int, pad: int) -> Any:
    common = {
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "tie_word_embeddings": True,
    }
    if role == "primary":
        return hf.Qwen2Config(**common)
    if role == "validator":
        return hf.MistralConfig(**common)
    return hf.LlamaConfig(**common)


def make_tiny_models(directory: Path, seed: int = 0) -> dict[str, Path]:
    """Write ``primary/``, ``validator/`` and ``creative/`` under ``directory``; returns role → path."""
    tokenizer = build_tokenizer()
    paths: dict[str, Path] = {}
    for index, role in enumerate(TINY_MODELS):
        torch.manual_seed(seed + index)
        config = _config(role, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
        model = hf.AutoModelForCausalLM.from_config(config)
        path = directory / role
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        (path / REVISION_FILE).write_text(TINY_REVISION + "\n", encoding="utf-8")
        paths[role] = path
    return paths
