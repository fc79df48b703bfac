"""Dashboards and rules only query metrics that exist, and every PromQL expression parses.

KNOWN_METRICS is the contract between the services, the operator and the observability files:
a name here is exported by one of them (or recorded by the chart's rules). A dashboard or rule
that queries anything else is a typo or a metric nobody exports, and fails here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "charts" / "artisan" / "files"
RULE_FILES = [FILES / "prometheus-rules.yaml", *sorted((FILES / "alerts").glob("*.yaml"))]
DASHBOARDS = sorted((ROOT / "charts" / "artisan" / "dashboards").glob("*.json"))

HISTOGRAMS = {
    "artisan_http_request_duration_seconds",
    "artisan_brief_latency_seconds",
    "llm_brief_elapsed_ms",
    "artisan_request_end_to_end_seconds",
    "artisan_queue_wait_seconds",
    "artisan_time_to_first_token_seconds",
    "artisan_reconcile_time_seconds",
    "rl_reward_raw",
    "rl_reward_normalized",
}
# Series Prometheus itself writes for every target.
PROMETHEUS_SERIES = {"up"}
KNOWN_METRICS = HISTOGRAMS | {
    # ensemble (artisan_ensemble/metrics.py)
    "artisan_http_requests_total",
    "model_health_status",
    "artisan_breaker_state",
    "artisan_model_calls_total",
    "hybrid_switch_total",
    "artisan_fallback_total",
    "artisan_cache_hits_total",
    "artisan_cache_misses_total",
    "artisan_cache_entries",
    "artisan_queue_size",
    "artisan_queue_capacity",
    "artisan_requests_running",
    "artisan_requests_rejected_total",
    "ifra_violations_total",
    "allergen_hits_total",
    "artisan_formulas_total",
    "ifra_compliance_rate",
    "data_curation_samples_total",
    "data_curation_acceptance_rate",
    "artisan_gpu_memory_used_bytes",
    "artisan_gpu_memory_total_bytes",
    "artisan_prompt_tokens_total",
    "artisan_generation_tokens_total",
    "artisan_chat_completions_total",
    # gateway
    "artisan_variant_observations_total",
    "artisan_variant_sum_total",
    "artisan_variant_sum_squares_total",
    "ab_test_requests_total",
    "artisan_gateway_routed_total",
    "artisan_gateway_upstream_errors_total",
    "artisan_gateway_routing_reloads_total",
    "artisan_gateway_routing_loaded_timestamp_seconds",
    # trainer (artisan_trainer/server.py)
    "ppo_entropy_coef",
    "ppo_entropy",
    "ppo_update",
    "ppo_policy_loss",
    "ppo_value_loss",
    "ppo_explained_variance",
    "ppo_steps_per_second",
    "ppo_last_checkpoint_step",
    "ppo_best_checkpoint_step",
    "artisan_trainer_rollbacks_exhausted",
    "ppo_learning_rate",
    "ppo_training_step",
    "ppo_approx_kl",
    "rl_entropy_coefficient",
    "rl_entropy_coefficient_final",
    "rl_reward_normalizer_mean",
    "rl_reward_normalizer_std",
    "rl_checkpoint_saved_total",
    "rl_checkpoint_rollback_total",
    "rl_reward_ma",
    "rl_clip_frac",
    # operator
    "artisan_reconcile_total",
    "artisan_reconcile_errors_total",
    "artisan_resource_generation",
    "artisan_canary_weight",
    "artisan_canary_step_index",
    "artisan_canary_aborted",
    "artisan_abexperiment_srm",
    "artisan_modelpin_downshifted",
    "artisan_training_operator_rollbacks_total",
}

_DECLARATION = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary|GaugeMetricFamily|CounterMetricFamily)\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\""
)

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "group_left",
    "group_right",
    "by",
    "without",
}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels and durations removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^{}]*\}", "", text)
    text = re.sub(r"\[[^\[\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        token = match.group()
        if token in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(token)
    return names


def is_known(name: str, recorded: set[str]) -> bool:
    if name in KNOWN_METRICS or name in PROMETHEUS_SERIES or name in recorded:
        return True
    base, _, suffix = name.rpartition("_")
    return suffix in {"bucket", "sum", "count"} and base in HISTOGRAMS


def rule_list() -> list[dict[str, str]]:
    docs = [yaml.safe_load(path.read_text()) for path in RULE_FILES]
    return [rule for doc in docs for group in doc["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rule_list() if "record" in rule}


def dashboard_exprs(path: Path) -> list[str]:
    dashboard = json.loads(path.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [
        var["definition"].removeprefix("label_values(").rsplit(",", 1)[0]
        for var in dashboard["templating"]["list"]
        if var["type"] == "query"
    ]
    return exprs


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (mode, le) (rate(x_bucket{a="b"}[5m]))', {"x_bucket"}),
        ("a / ignoring(window) group_left sum by (namespace) (b) > 0.3 * abs(c)", {"a", "b", "c"}),
        ("time() - d offset 5m", {"d"}),
        ('rl_reward_ma{window="recent", namespace=~"$namespace"} > 1e3', {"rl_reward_ma"}),
        (
            "artisan:cache_miss_ratio:rate10m > 0.8 and on (namespace) e",
            {"artisan:cache_miss_ratio:rate10m", "e"},
        ),
    ],
)
def test_metric_names_are_extracted(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_rules_query_only_known_metrics() -> None:
    recorded = recorded_names()
    unknown = {
        name for rule in rule_list() for name in metric_names(rule["expr"]) if not is_known(name, recorded)
    }
    assert unknown == set()


def test_the_eight_dashboards_exist() -> None:
    assert {p.stem for p in DASHBOARDS} == {
        "entropy-annealing",
        "reward-distribution",
        "checkpoint-health",
        "ab-performance",
        "data-quality",
        "config-changes",
        "canary-progress",
        "model-health",
    }


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_is_valid_and_queries_known_metrics(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"].startswith("artisan-")
    assert dashboard["title"].startswith("Artisan / ")
    assert dashboard["panels"], "a dashboard without panels"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    recorded = recorded_names()
    for expr in dashboard_exprs(path):
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert {n for n in names if not is_known(n, recorded)} == set(), expr


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    # promtool parses PromQL when it checks rules: wrap every dashboard query in a recording rule.
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: run `make system-deps`"
    rules = [
        {"record": f"check:{path.stem.replace('-', '_')}:{i}", "expr": expr}
        for path in DASHBOARDS
        for i, expr in enumerate(dashboard_exprs(path))
    ]
    rule_file = tmp_path / "dashboards.rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_a_broken_query_is_caught(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    rule_file = tmp_path / "broken.rules.yaml"
    rule_file.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "r", "expr": "sum(rate(a[5m])"}]}]})
    )
    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert metric_names("ifra_violation_total") - KNOWN_METRICS == {"ifra_violation_total"}


def exported_metrics() -> set[str]:
    """Metric names declared with prometheus_client anywhere in our packages (counters get _total)."""
    names = set()
    for path in [*(ROOT / "operator").rglob("*.py"), *(ROOT / "services").rglob("*.py")]:
        for kind, name in _DECLARATION.findall(path.read_text()):
            names.add(name if kind != "Counter" or name.endswith("_total") else f"{name}_total")
    return names


def test_every_known_metric_is_exported_by_our_code() -> None:
    # No allowlist: a dashboard or rule may only query what a service or the operator declares.
    assert KNOWN_METRICS - exported_metrics() == set()


SEED_METRIC_NAMES = {
    "llm_brief_elapsed_ms",
    "ab_test_requests_total",
    "model_health_status",
    "hybrid_switch_total",
    "ifra_violations_total",
    "allergen_hits_total",
    "ifra_compliance_rate",
    "rl_entropy_coefficient",
    "rl_checkpoint_rollback_total",
    "rl_reward_ma",
}


def test_the_seeds_metric_names_stay_available() -> None:
    # Users' existing dashboards and alerts query these: exported directly or recorded by the rules.
    assert SEED_METRIC_NAMES - (exported_metrics() | recorded_names()) == set()
