"""Samples are accepted and every invalid fixture is refused, naming the right field, by both the
offline validator (generated schema + CEL, as the API server) and the pydantic models (as the operator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from artisan_operator.api import KINDS_BY_NAME
from artisan_operator.cli import main
from artisan_operator.validation import format_path, validate_object, validate_text

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "configs" / "samples").glob("*.yaml"))
INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def _expected_path(fixture: Path) -> str:
    """The field path a fixture's first line names: ``# expect: spec.ppo.entropy.final``."""
    first = fixture.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{fixture.name} must start with '# expect: <field path>'"
    return first.removeprefix("# expect: ").strip()


def _load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _pydantic_paths(error: ValidationError) -> list[str]:
    return [format_path(("spec", *e["loc"])) for e in error.errors()]


def _segments(path: str) -> list[str]:
    return path.replace("[", ".[").split(".")


def test_corpus_is_large_and_covers_every_kind() -> None:
    assert len(INVALID) >= 30
    kinds = {_load(f).get("kind") for f in INVALID}
    assert set(KINDS_BY_NAME) <= kinds


def test_one_sample_per_kind_with_consistent_references() -> None:
    samples = {(doc := _load(p))["kind"]: doc for p in SAMPLES}
    assert set(samples) == set(KINDS_BY_NAME)
    pin = samples["ModelPin"]
    assert pin["spec"]["policy"]["trainingRunRef"]["name"] == samples["TrainingRun"]["metadata"]["name"]
    for kind in ("Canary", "ABExperiment"):
        assert samples[kind]["spec"]["targetRef"]["name"] == pin["metadata"]["name"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_is_accepted_by_schema_cel_and_pydantic(sample: Path) -> None:
    checked, problems = validate_text(sample.read_text(encoding="utf-8"), source=sample.name)
    assert checked == 1
    assert problems == []
    document = _load(sample)
    spec = KINDS_BY_NAME[document["kind"]].spec.model_validate(document["spec"])
    # the wire form pydantic writes back is valid too (what the operator would store)
    assert validate_object({**document, "spec": spec.to_wire()}) == []


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_refused_by_validator_naming_the_field(fixture: Path) -> None:
    checked, problems = validate_text(fixture.read_text(encoding="utf-8"), source=fixture.name)
    assert checked == 1
    # each fixture breaks exactly one thing, so exactly that field is named
    assert {p.path for p in problems} == {_expected_path(fixture)}, [str(p) for p in problems]
    assert all(p.source == fixture.name and p.message for p in problems)


# Fixtures whose problem lies inside spec: pydantic sees only spec, not the envelope around it.
SPEC_FIXTURES = [f for f in INVALID if _expected_path(f).startswith("spec.")]


@pytest.mark.parametrize("fixture", SPEC_FIXTURES, ids=lambda p: p.stem)
def test_invalid_spec_refused_by_pydantic_naming_the_field(fixture: Path) -> None:
    document = _load(fixture)
    expected = _expected_path(fixture)
    model = KINDS_BY_NAME[document["kind"]].spec
    with pytest.raises(ValidationError) as caught:
        model.model_validate(document["spec"])
    # pydantic names the field itself or something inside it (e.g. the step whose weight drops)
    paths = _pydantic_paths(caught.value)
    assert any(_segments(p)[: len(_segments(expected))] == _segments(expected) for p in paths), paths


def test_envelope_fixtures_exist_for_what_pydantic_cannot_see() -> None:
    envelope = {_expected_path(f) for f in INVALID if f not in SPEC_FIXTURES}
    assert {"apiVersion", "kind", "metadata.name", "spec"} <= envelope


def test_problem_names_object_file_and_field() -> None:
    fixture = next(f for f in INVALID if f.stem == "tr-entropy-final-above-initial")
    _, problems = validate_text(fixture.read_text(encoding="utf-8"), source=str(fixture))
    assert [str(p) for p in problems] == [
        f"{fixture}: TrainingRun default/bad-run: spec.ppo.entropy.final: "
        "final must be less than or equal to initial"
    ]


def _run(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    metadata = {"name": name}
    return {"apiVersion": "artisan.dev/v1alpha1", "kind": "TrainingRun", "metadata": metadata, "spec": spec}


def test_null_on_optional_field_is_dropped_like_the_api_server() -> None:
    assert validate_object(_run("nulls", {"image": None, "queueName": None})) == []


def test_empty_training_run_is_valid_with_every_default() -> None:
    assert validate_object(_run("defaults", {})) == []
    assert validate_object({k: v for k, v in _run("no-spec", {}).items() if k != "spec"}) == []


def test_every_problem_of_one_object_is_reported() -> None:
    problems = validate_object(_run("many", {"ppo": {"gamma": 2, "clipRange": 0, "bogus": 1}, "suspend": 3}))
    expected = {"spec.ppo.gamma", "spec.ppo.clipRange", "spec.ppo.bogus", "spec.suspend"}
    assert {p.path for p in problems} == expected


def test_cel_runs_on_a_sibling_of_a_schema_error() -> None:
    problems = validate_object(
        _run("sibling", {"ppo": {"gamma": "high", "entropy": {"initial": 0.001, "final": 0.01}}})
    )
    assert {p.path for p in problems} == {"spec.ppo.gamma", "spec.ppo.entropy.final"}


def test_not_yaml_and_not_a_mapping_are_problems() -> None:
    _, problems = validate_text("a: [1, 2", source="broken.yaml")
    assert len(problems) == 1
    assert "not valid YAML" in problems[0].message
    _, problems = validate_text("- 1\n- 2\n", source="list.yaml")
    assert "expected a Kubernetes object" in problems[0].message


def test_kind_list_is_validated_item_by_item() -> None:
    items = [_run("ok", {}), _run("bad", {"ppo": {"gamma": 0}})]
    checked, problems = validate_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    assert checked == 2
    assert [(p.obj, p.path) for p in problems] == [("TrainingRun bad", "spec.ppo.gamma")]


def test_other_groups_can_be_skipped() -> None:
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: artisan}\n---\n"
    text = namespace + yaml.safe_dump(_run("ok", {}))
    assert validate_text(text, only_artisan=True) == (1, [])
    checked, problems = validate_text(text)
    assert checked == 2
    assert [p.path for p in problems] == ["apiVersion"]


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_accepts_the_samples_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", str(ROOT / "configs" / "samples")]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "4 object(s) checked, 0 problem(s)" in captured.err


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_cli_refuses_each_invalid_fixture(fixture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-q", "-f", str(fixture)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines
    assert all(line.startswith(f"{fixture}: ") for line in lines)
    assert any(f": {_expected_path(fixture)}: " in line for line in lines)


def test_cli_multiple_files_one_invalid_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["validate", "-f", str(SAMPLES[0]), "-f", str(INVALID[0]), str(SAMPLES[1])]
    assert main(args) == 1
    out = capsys.readouterr().out.splitlines()
    assert out
    assert all(line.startswith(str(INVALID[0])) for line in out)


def test_cli_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", str(tmp_path / "absent.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().out


def test_cli_multi_document_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle.yaml"
    bundle.write_text("---\n".join(p.read_text(encoding="utf-8") for p in SAMPLES), encoding="utf-8")
    assert main(["validate", "-f", str(bundle)]) == 0
    assert "4 object(s) checked" in capsys.readouterr().err
