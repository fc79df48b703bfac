"""The generated CRDs are structural, complete, in sync with the models and with the chart's copy."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from artisan_common.model import ApiModel
from artisan_operator import crdgen
from artisan_operator.api import KINDS, KINDS_BY_NAME
from artisan_operator.validation import compile_rule, crd_schemas

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_KEYWORDS = {"$ref", "$defs", "anyOf", "allOf", "oneOf", "not", "title", "const", "nullable"}


def _nodes(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every schema node with a readable path."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    """A model and every model it contains (through Optional, lists and dicts)."""
    if model in seen:
        return
    seen.add(model)
    yield model
    for field in model.model_fields.values():
        stack: list[Any] = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from _models(annotation, seen)
            stack.extend(getattr(annotation, "__args__", ()))


ALL_MODELS = sorted(
    {m for kind in KINDS for root in (kind.spec, kind.status) for m in _models(root, set())},
    key=lambda m: m.__name__,
)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: Any) -> None:
    schema = crd_schemas()[kind.kind]
    for path, node in _nodes(schema):
        assert not FORBIDDEN_KEYWORDS & node.keys(), f"{kind.kind}{path}: {FORBIDDEN_KEYWORDS & node.keys()}"
        assert "type" in node, f"{kind.kind}{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), f"{kind.kind}{path}"
        assert node.get("additionalProperties", {}) is not False
        if "exclusiveMinimum" in node or "exclusiveMaximum" in node:  # OpenAPI v3.0 boolean form
            assert node.get("exclusiveMinimum", True) is True
            assert node.get("exclusiveMaximum", True) is True
        if node["type"] == "array":
            assert "items" in node, f"{kind.kind}{path}: array without items"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_field_is_described_for_kubectl_explain(kind: Any) -> None:
    schema = crd_schemas()[kind.kind]
    spec_and_status = {"spec": schema["properties"]["spec"], "status": schema["properties"]["status"]}
    for top, sub in spec_and_status.items():
        for path, node in _nodes(sub, top):
            if not path.endswith("[]") and not path.endswith("}"):
                assert node.get("description"), f"{kind.kind} {path} has no description"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_defaults_validate_against_their_own_schema(kind: Any) -> None:
    """The API server refuses a CRD whose default does not validate (after defaulting itself)."""
    for path, node in _nodes(crd_schemas()[kind.kind]):
        if "default" in node:
            value = crdgen.apply_defaults(node["default"], node)
            errors = [e.message for e in jsonschema.Draft4Validator(node).iter_errors(value)]
            assert errors == [], f"{kind.kind}{path}: default {value!r}: {errors}"


def test_cel_rules_compile_and_carry_messages() -> None:
    rules = [
        rule
        for schema in crd_schemas().values()
        for _, node in _nodes(schema)
        for rule in node.get("x-kubernetes-validations", ())
    ]
    assert len(rules) >= 18
    for rule in rules:
        assert rule["message"]
        compile_rule(rule["rule"])
        if "fieldPath" in rule:
            assert rule["fieldPath"].startswith(".")


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_cross_field_validator_has_a_cel_twin(model: type[BaseModel]) -> None:
    validators = model.__pydantic_decorators__.model_validators
    rules = model.cel_rules if issubclass(model, ApiModel) else ()
    assert bool(validators) == bool(rules), f"{model.__name__}: {list(validators)} vs {rules}"
    # each rule names fields that exist on the model (camelCase aliases)
    aliases = {f.alias or name for name, f in model.model_fields.items()}
    for rule in rules:
        if rule.field_path:
            assert rule.field_path.lstrip(".").split(".")[0] in aliases


def test_required_fields_from_section_2_1() -> None:
    def required(kind: str, *path: str) -> list[str]:
        node: Mapping[str, Any] = crd_schemas()[kind]
        for name in path:
            node = node["properties"][name]
        return list(node.get("required", ()))

    assert required("ModelPin") == ["spec"]
    assert "models" in required("ModelPin", "spec")
    assert "primary" in required("ModelPin", "spec", "models")
    assert set(required("ModelPin", "spec", "models", "primary")) == {"name", "source", "revision"}
    assert {"targetRef", "steps"} <= set(required("Canary", "spec"))
    assert {"targetRef", "variants"} <= set(required("ABExperiment", "spec"))
    assert required("TrainingRun") == []


def test_crd_names_columns_and_subresources() -> None:
    for kind in KINDS:
        crd = crdgen.build_crds()[kind.kind]
        assert crd["metadata"]["name"] == f"{kind.plural}.artisan.dev"
        names = crd["spec"]["names"]
        assert names["shortNames"] == list(kind.short_names)
        assert names["categories"] == ["artisan"]
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert [c["name"] for c in version["additionalPrinterColumns"]][-1] == "Age"
    assert {k.short_names[0] for k in KINDS} == {"tr", "mpin", "cny", "abx"}


def test_committed_crds_and_chart_copy_are_up_to_date() -> None:
    files = crdgen.expected_files(ROOT / "crds", ROOT / "charts" / "artisan")
    assert len(files) == 2 * len(KINDS)
    assert crdgen.stale_diffs(files) == []
    for path in files:
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert crd["spec"]["names"]["kind"] in KINDS_BY_NAME


def test_check_reports_a_stale_file_and_write_repairs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, chart = tmp_path / "crds", tmp_path / "chart"
    assert crdgen.main(["--out", str(out), "--chart", str(chart)]) == 0
    assert crdgen.main(["--out", str(out), "--chart", str(chart), "--check"]) == 0
    target = chart / "files" / "crds" / "canaries.artisan.dev.yaml"
    stale = target.read_text(encoding="utf-8").replace("maxItems: 50", "maxItems: 51")
    target.write_text(stale, encoding="utf-8")
    shutil.copy(out / "canaries.artisan.dev.yaml", out / "widgets.artisan.dev.yaml")
    capsys.readouterr()
    assert crdgen.main(["--out", str(out), "--chart", str(chart), "--check"]) == 1
    report = capsys.readouterr().out
    assert "-                maxItems: 51" in report
    assert "+                maxItems: 50" in report
    assert "widgets.artisan.dev.yaml: no kind generates this file any more" in report
    assert crdgen.main(["--out", str(out), "--chart", str(chart)]) == 0
    assert not (out / "widgets.artisan.dev.yaml").exists()
    assert crdgen.main(["--out", str(out), "--chart", str(chart), "--check"]) == 0


def test_output_is_deterministic() -> None:
    first = {k: crdgen.render(v) for k, v in crdgen.build_crds().items()}
    crdgen._crds.cache_clear()  # generate again from the models, not from the cache
    second = {k: crdgen.render(v) for k, v in crdgen.build_crds().items()}
    assert first == second
    assert all("&id" not in text and "*id" not in text for text in first.values())


def test_no_bare_yaml_1_1_boolean_words() -> None:
    """kubectl and Helm read YAML 1.1 (Go yaml.v2): a bare `n:` key would become `false`."""
    bare = re.compile(
        r"^\s*-?\s*(y|n|yes|no|on|off)\s*:|:\s+(y|n|yes|no|on|off)\s*$", re.IGNORECASE | re.MULTILINE
    )
    for crd in crdgen.build_crds().values():
        text = crdgen.render(crd)
        assert bare.search(text) is None, bare.search(text)
    quoted = crdgen.render({"n": "y", "k": ["on", "N"]})
    assert yaml.safe_load(quoted) == {"n": "y", "k": ["on", "N"]}
    assert bare.search(quoted) is None
