"""The chart's alerting and recording rules: promtool check, promtool unit tests, coverage of every
alert in every rule file the chart's PrometheusRule includes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "charts" / "artisan" / "files"
# Every file templates/prometheusrule.yaml globs: the operator's own rules and the platform's.
RULE_FILES = [FILES / "prometheus-rules.yaml", *sorted((FILES / "alerts").glob("*.yaml"))]
UNIT_TESTS = sorted((ROOT / "tests" / "ops" / "promtool").glob("*.test.yaml"))

# The seeds' alerts plus the ones Artisan adds (issue 6), by the name the rules file gives them.
REQUIRED_ALERTS = {
    "model down": "ArtisanModelDown",
    "high latency": "ArtisanHighLatency",
    "queue overload": "ArtisanQueueOverload",
    "high cache-miss rate": "ArtisanHighCacheMissRate",
    "entropy not decreasing": "ArtisanEntropyNotDecreasing",
    "checkpoint rollback": "ArtisanCheckpointRollback",
    "frequent rollbacks": "ArtisanFrequentRollbacks",
    "high LLM latency": "ArtisanHighLLMLatency",
    "IFRA violation": "ArtisanIFRAViolation",
    "high worker VRAM": "ArtisanHighWorkerVRAM",
    "low reward moving average": "ArtisanLowRewardMovingAverage",
    "canary aborted": "ArtisanCanaryAborted",
    "SRM detected": "ArtisanSRMDetected",
    "trainer stalled": "ArtisanTrainerStalled",
}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path is not None, "promtool is missing: run `make system-deps` (Debian package 'prometheus')"
    return path


def rules(path: Path | None = None) -> list[dict[str, object]]:
    """The rules of one file, or of every rule file."""
    docs = [yaml.safe_load(p.read_text()) for p in ([path] if path else RULE_FILES)]
    return [rule for doc in docs for group in doc["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, object]]:
    return {str(rule["alert"]): rule for rule in rules() if "alert" in rule}


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules_accepts_the_file(path: Path) -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules(path))} rules found" in result.stdout


def test_every_rule_file_is_unit_tested() -> None:
    tested = {
        (path.parent / name).resolve()
        for path in UNIT_TESTS
        for name in yaml.safe_load(path.read_text())["rule_files"]
    }
    assert {p.resolve() for p in RULE_FILES} <= tested
    names = [str(r.get("alert") or r.get("record")) for r in rules()]
    assert len(names) == len(set(names)), "a rule name is used twice across the files"


def test_promtool_unit_tests_pass() -> None:
    assert UNIT_TESTS, "no promtool unit-test files in tests/ops/promtool"
    result = subprocess.run(
        [promtool(), "test", "rules", *map(str, UNIT_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_required_alert_exists() -> None:
    assert set(REQUIRED_ALERTS.values()) <= set(alerts())


def test_every_alert_has_severity_and_text() -> None:
    for name, rule in alerts().items():
        labels = rule.get("labels")
        annotations = rule.get("annotations")
        assert isinstance(labels, dict)
        assert labels.get("severity") in {"critical", "warning", "info"}, name
        assert isinstance(annotations, dict)
        assert annotations.get("summary"), name
        assert annotations.get("description"), name


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert set(alerts()) - firing == set(), "alerts never shown firing"
    assert set(alerts()) - silent == set(), "alerts never shown silent"


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ("unless on (namespace, pod)", "and on (namespace, pod)"),
        ("model_health_status == 0", "model_health_status == 1"),
        # rollbacks counted per pod again (a Job attempt each), or without the operator's
        (
            "sum by (namespace, trainingrun) (\n            increase(rl_checkpoint_rollback_total[1h])",
            "sum by (namespace, trainingrun, pod) (\n            increase(rl_checkpoint_rollback_total[1h])",
        ),
        ("artisan_training_operator_rollbacks_total[1h]", "artisan_training_operator_rollbacks_total[1m]"),
        ("artisan_training_operator_rollbacks_total[10m]", "artisan_training_operator_rollbacks_total[1m]"),
        # the operator's own alerts
        ('absent(up{job=~".*artisan-operator-metrics"} == 1)', 'absent(up{job=~".*artisan-operator"} == 1)'),
        ("[10m]))) > 30", "[10m]))) > 60"),
    ],
)
def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path, original: str, broken: str) -> None:
    # The promtool suite is only worth having if it fails when a rule is wrong.
    (target,) = [p for p in RULE_FILES if original in p.read_text()]
    for path in RULE_FILES:
        copy = tmp_path / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text()
        copy.write_text(text.replace(original, broken) if path == target else text)
    test_dir = tmp_path / "tests" / "ops" / "promtool"
    test_dir.mkdir(parents=True)
    for path in UNIT_TESTS:
        shutil.copy(path, test_dir / path.name)
    result = subprocess.run(
        [promtool(), "test", "rules", *(str(test_dir / p.name) for p in UNIT_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
