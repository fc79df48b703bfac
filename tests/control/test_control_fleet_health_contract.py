"""The model-health contract between the ensemble and the operator's fleet health, end to end in process:
the ensemble's real /metrics exposition → the operator's scrape provider → ``assess_fleet``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest

from artisan_common.catalog import load_catalog
from artisan_common.serving import DownshiftPolicy
from artisan_ensemble.ensemble.config import ServiceConfig
from artisan_ensemble.ensemble.ports import GenerationRequest, ModelInfo
from artisan_ensemble.metrics import EnsembleMetrics
from artisan_ensemble.service import EnsembleService
from artisan_operator.api.model_pin import ModelPinSpec
from artisan_operator.handlers.fleet_health import HEALTH_METRIC, pinned_roles
from artisan_operator.metrics.providers import ScrapeProvider
from artisan_operator.policy.fleet_health import FleetObservation, assess_fleet

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SPEC = ModelPinSpec.model_validate(
    {
        "models": {
            "primary": {"name": "qwen", "source": "/m/q", "revision": "1"},
            "creative": {"name": "llama", "source": "/m/l", "revision": "1"},
        },
        "downshift": {"unhealthyPodFraction": 0.5, "unhealthyForSeconds": 30, "holdSeconds": 60},
    }
)


class NamedGenerator:
    def __init__(self, role: str, name: str) -> None:
        self._info = ModelInfo(role, name, "1", "memory", "cpu", 0)

    @property
    def info(self) -> ModelInfo:
        return self._info

    def generate(self, request: GenerationRequest) -> str:
        return "{}"

    def stream(self, request: GenerationRequest) -> list[str]:
        return ["{}"]


def ensemble_exposition(creative_down: bool) -> str:
    metrics = EnsembleMetrics()
    generators = {
        "primary": NamedGenerator("primary", "qwen"),
        "creative": NamedGenerator("creative", "llama"),
    }
    service = EnsembleService(ServiceConfig(), generators, load_catalog(), metrics)  # type: ignore[arg-type]
    try:
        if creative_down:
            service.breakers["creative"].force_open()
        return generate_latest(metrics.registry).decode()
    finally:
        service.close()


async def pod_health(texts: dict[str, str]) -> dict[str, dict[str, bool]]:
    """What the fleet loop's scrape path builds: pod → role → healthy, for the pinned roles."""
    roles = pinned_roles(SPEC)
    pods: dict[str, dict[str, bool]] = {}
    for pod, text in texts.items():

        async def fetch(url: str, text: str = text) -> str:
            return text

        provider = ScrapeProvider(targets=lambda: ["http://pod/metrics"], fetch=fetch)
        reply = await provider.query_by(HEALTH_METRIC, "role")
        assert not isinstance(reply, str), reply
        pods[pod] = {role: value >= 1 for role, value in reply.items() if role in roles}
    return pods


async def test_the_ensembles_health_series_drive_the_fleet_downshift_by_role() -> None:
    assert pinned_roles(SPEC) == ["primary", "creative"]
    healthy = await pod_health({"a": ensemble_exposition(False), "b": ensemble_exposition(False)})
    assert healthy == {"a": {"primary": True, "creative": True}, "b": {"primary": True, "creative": True}}

    down = await pod_health({"a": ensemble_exposition(True), "b": ensemble_exposition(True)})
    assert down["a"] == {"primary": True, "creative": False}
    policy: DownshiftPolicy = SPEC.downshift
    plan = assess_fleet(SPEC.models, policy, FleetObservation(pods=down), T0)
    later = FleetObservation(pods=down, model_health=plan.model_health)
    plan = assess_fleet(SPEC.models, policy, later, T0 + timedelta(seconds=30))
    assert plan.mode_ceiling == "balanced"
    assert [(h.role, h.name, h.healthy_pods, h.total_pods) for h in plan.model_health] == [
        ("primary", "qwen", 2, 2),
        ("creative", "llama", 0, 2),
    ]
