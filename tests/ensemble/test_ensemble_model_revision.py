"""The pinned revision is enforced when a model directory is resolved (flat + marker, revision
sub-directory, Hugging Face hub cache snapshots), and the commit actually loaded is reported."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from artisan_ensemble.app import create_app
from artisan_ensemble.backends.tiny import TINY_REVISION
from artisan_ensemble.backends.transformers_backend import ModelLoadError, resolve_model_path
from artisan_ensemble.settings import EnsembleSettings

from .conftest import fast_config

SHA_A = "0123456789abcdef0123456789abcdef01234567"
SHA_B = "0123456fffffffffffffffffffffffffffffffff"  # shares the 7-digit prefix 0123456 with A
SHA_C = "89abcdef0123456789abcdef0123456789abcdef"

Tree = Mapping[str, str | None]
"""Relative path → file content, or None for an (empty) directory."""

HF_REPO: Tree = {
    "m/refs/main": SHA_A,
    "m/refs/v1.0": SHA_C + "\n",
    "m/refs/refs/pr/1": SHA_B,
    "m/refs/stale": "ffffffffffffffffffffffffffffffffffffffff",  # a ref whose snapshot was never fetched
    f"m/snapshots/{SHA_A}/config.json": "{}",
    f"m/snapshots/{SHA_B}/config.json": "{}",
    f"m/snapshots/{SHA_C}/config.json": "{}",
    "m/blobs": None,
}


def build(root: Path, tree: Tree) -> None:
    for relative, content in tree.items():
        path = root / relative
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")


# (case, tree, revision, allow_unverified, loaded from (relative) or None, verified_by / error text, commit)
CASES: list[tuple[str, Tree, str, bool, str | None, str, str | None]] = [
    (
        "flat dir with a matching marker",
        {"m/config.json": "{}", "m/artisan-revision": "2.5.1\n"},
        "2.5.1",
        False,
        "m",
        "marker",
        None,
    ),
    (
        "marker mismatch refused",
        {"m/config.json": "{}", "m/artisan-revision": "2.5.0\n"},
        "2.5.1",
        False,
        None,
        "holds revision '2.5.0' but the primary pin asks for '2.5.1'",
        None,
    ),
    (
        "marker mismatch refused even when unverified dirs are allowed",
        {"m/artisan-revision": "2.5.0"},
        "2.5.1",
        True,
        None,
        "holds revision '2.5.0'",
        None,
    ),
    (
        "revision sub-directory",
        {"m/2.5.1/config.json": "{}", "m/2.5.0/config.json": "{}"},
        "2.5.1",
        False,
        "m/2.5.1",
        "revision-dir",
        None,
    ),
    (
        "revision sub-directory with a matching marker",
        {"m/2.5.1/artisan-revision": "2.5.1"},
        "2.5.1",
        False,
        "m/2.5.1",
        "revision-dir",
        None,
    ),
    (
        "revision sub-directory whose marker disagrees",
        {"m/2.5.1/artisan-revision": "2.4.0"},
        "2.5.1",
        False,
        None,
        "holds revision '2.4.0'",
        None,
    ),
    ("HF cache by full commit sha", HF_REPO, SHA_B, False, f"m/snapshots/{SHA_B}", "hf-snapshot", SHA_B),
    (
        "HF cache by a 7-digit sha prefix",
        HF_REPO,
        "89abcde",
        False,
        f"m/snapshots/{SHA_C}",
        "hf-snapshot",
        SHA_C,
    ),
    (
        "HF cache by a longer sha prefix",
        HF_REPO,
        "01234567",
        False,
        f"m/snapshots/{SHA_A}",
        "hf-snapshot",
        SHA_A,
    ),
    ("HF cache by branch ref", HF_REPO, "main", False, f"m/snapshots/{SHA_A}", "hf-snapshot", SHA_A),
    (
        "HF cache by tag ref (a trailing newline is fine)",
        HF_REPO,
        "v1.0",
        False,
        f"m/snapshots/{SHA_C}",
        "hf-snapshot",
        SHA_C,
    ),
    ("HF cache by PR ref", HF_REPO, "refs/pr/1", False, f"m/snapshots/{SHA_B}", "hf-snapshot", SHA_B),
    (
        "HF cache ambiguous sha prefix refused",
        HF_REPO,
        "0123456",
        False,
        None,
        f"primary model (source 'm'): <tmp>/m: revision '0123456' is ambiguous, it prefixes {SHA_A}, {SHA_B}",
        None,
    ),
    (
        "HF cache unknown ref refused, naming what is there",
        HF_REPO,
        "dev",
        False,
        None,
        f"'dev' is neither a ref nor a downloaded commit (refs: main, refs/pr/1, stale, v1.0; "
        f"snapshots: {SHA_A}, {SHA_B}, {SHA_C})",
        None,
    ),
    (
        "HF cache prefix shorter than 7 digits refused",
        HF_REPO,
        "012345",
        False,
        None,
        "'012345' is neither a ref nor a downloaded commit",
        None,
    ),
    (
        "HF cache full sha not downloaded refused",
        HF_REPO,
        "f" * 40,
        False,
        None,
        f"commit {'f' * 40} is not downloaded",
        None,
    ),
    (
        "HF cache ref to a missing snapshot refused",
        HF_REPO,
        "stale",
        False,
        None,
        "ref 'stale' points to 'ffff",
        None,
    ),
    ("HF cache is verified whatever the setting", HF_REPO, "dev", True, None, "neither a ref", None),
    (
        "unverified flat dir refused",
        {"m/config.json": "{}"},
        "2.5.1",
        False,
        None,
        "primary model: cannot verify that",
        None,
    ),
    (
        "unverified flat dir allowed by the setting",
        {"m/config.json": "{}"},
        "2.5.1",
        True,
        "m",
        "unverified",
        None,
    ),
    (
        "a revision cannot climb out of the directory",
        {"m/config.json": "{}", "x/config.json": "{}"},
        "../x",
        False,
        None,
        "cannot verify",
        None,
    ),
    ("missing directory refused", {}, "2.5.1", True, None, "primary model directory", None),
]


@pytest.mark.parametrize(
    ("tree", "revision", "allow", "loaded", "verdict", "commit"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_resolution_table(
    tmp_path: Path,
    tree: Tree,
    revision: str,
    allow: bool,
    loaded: str | None,
    verdict: str,
    commit: str | None,
) -> None:
    build(tmp_path, tree)
    if loaded is None:
        with pytest.raises(ModelLoadError) as error:
            resolve_model_path(
                "m", revision, tmp_path, tmp_path / "pvc", role="primary", allow_unverified=allow
            )
        assert verdict.replace("<tmp>", str(tmp_path)) in str(error.value)
        return
    location = resolve_model_path(
        "m", revision, tmp_path, tmp_path / "pvc", role="primary", allow_unverified=allow
    )
    assert (location.path, location.verified_by, location.commit) == (tmp_path / loaded, verdict, commit)


def test_the_refusal_says_how_to_fix_it(tmp_path: Path) -> None:
    build(tmp_path, {"claim/qwen/config.json": "{}"})
    with pytest.raises(ModelLoadError) as error:
        resolve_model_path("pvc://claim/qwen", "2.5.1", None, tmp_path, role="primary")
    message = str(error.value)
    for needed in (
        "primary model",
        "'pvc://claim/qwen'",
        "'2.5.1'",
        str(tmp_path / "claim" / "qwen" / "artisan-revision"),
        "models--<org>--<name>",
        "ARTISAN_ENSEMBLE_ALLOW_UNVERIFIED_REVISION=true",
    ):
        assert needed in message


def test_the_allow_setting_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EnsembleSettings().allow_unverified_revision is False
    monkeypatch.setenv("ARTISAN_ENSEMBLE_ALLOW_UNVERIFIED_REVISION", "true")
    assert EnsembleSettings().allow_unverified_revision is True


def link_files(source: Path, target: Path) -> None:
    """``target`` gets symlinks to ``source``'s files except its marker (as a hub snapshot or a
    plain copy would hold them)."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != "artisan-revision":
            (target / item.name).symlink_to(item.resolve())


def hf_cache_repo(tiny_models: Path, root: Path) -> Path:
    """The primary tiny model laid out as ``huggingface-cli download`` leaves it: blobs, a snapshot
    of symlinks into them and ``refs/main``."""
    repo = root / "hub" / "models--artisan--tiny-qwen"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / SHA_A
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for index, item in enumerate(sorted((tiny_models / "primary").iterdir())):
        if item.name == "artisan-revision":
            continue
        blob = blobs / f"{index:040x}"
        blob.symlink_to(item.resolve())
        (snapshot / item.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA_A, encoding="utf-8")
    return repo


def pin_file(tmp_path: Path, primary: Mapping[str, str]) -> Path:
    pin = {
        "models": {
            "primary": {"name": "qwen", **primary},
            "validator": {"name": "mistral", "source": "validator", "revision": TINY_REVISION},
        },
        "modes": {
            "fast": {"maxNewTokens": 4},
            "balanced": {"maxNewTokens": 4},
            "creative": {"maxNewTokens": 4},
        },
    }
    path = tmp_path / "pin.json"
    path.write_text(json.dumps(pin), encoding="utf-8")
    return path


def test_a_tiny_model_loads_from_a_hub_cache_and_reports_its_commit(
    tiny_models: Path, tmp_path: Path
) -> None:
    repo = hf_cache_repo(tiny_models, tmp_path)
    settings = EnsembleSettings(
        models_dir=tiny_models,
        pin_config=pin_file(tmp_path, {"source": str(repo), "revision": "main"}),
        device="cpu",
    )
    with TestClient(create_app(settings, config=fast_config())) as client:
        assert client.get("/readyz").status_code == 200
        models = {m["role"]: m for m in client.get("/v1/models").json()["models"]}
        assert (models["primary"]["revision"], models["primary"]["commit"]) == ("main", SHA_A)
        assert models["primary"]["source"] == str(repo)
        # a marker-verified model has no commit to report, and says so
        assert (models["validator"]["revision"], models["validator"]["commit"]) == (TINY_REVISION, None)
        brief = client.post("/v1/briefs", json={"text": "a fresh citrus scent", "mode": "fast"})
        assert brief.status_code == 200


@pytest.mark.parametrize("allow", [False, True])
def test_an_unverified_directory_keeps_the_pod_unready_unless_allowed(
    tiny_models: Path, tmp_path: Path, allow: bool
) -> None:
    link_files(tiny_models / "primary", tmp_path / "flat-qwen")
    settings = EnsembleSettings(
        models_dir=tiny_models,
        pin_config=pin_file(tmp_path, {"source": str(tmp_path / "flat-qwen"), "revision": "2.5.1"}),
        device="cpu",
        allow_unverified_revision=allow,
    )
    with TestClient(create_app(settings, config=fast_config())) as client:
        ready = client.get("/readyz")
        if allow:
            assert ready.status_code == 200
            primary = next(m for m in client.get("/v1/models").json()["models"] if m["role"] == "primary")
            assert (primary["revision"], primary["commit"]) == ("2.5.1", None)
        else:
            assert ready.status_code == 503
            assert ready.json()["missing"] == ["primary"]
            assert "cannot verify" in ready.json()["errors"]["primary"]
