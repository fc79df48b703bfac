"""Background probes: an open breaker past its hold is probed by the ensemble itself, so a model the
fleet no longer routes to (downshifted) still recovers. Fake clock; real waits of a few ms at most."""

from __future__ import annotations

import contextlib
import threading

from fastapi.testclient import TestClient

from artisan_common.catalog import IngredientCatalog
from artisan_ensemble.app import create_app
from artisan_ensemble.ensemble.breaker import BreakerState
from artisan_ensemble.ensemble.ports import GenerationRequest
from artisan_ensemble.metrics import EnsembleMetrics
from artisan_ensemble.service import EnsembleService, ModelCallError
from artisan_ensemble.settings import EnsembleSettings

from .conftest import FakeClock, fake_generators, fast_config, wait_until

HOLD = 60  # fast_config's downshift.holdSeconds


def health(metrics: EnsembleMetrics, role: str) -> float | None:
    return metrics.registry.get_sample_value("model_health_status", {"model": f"fake-{role}", "role": role})


async def open_by_failures(service: EnsembleService, role: str) -> None:
    params = service.config.modes.params("creative")
    for _ in range(2):  # fast_config: failureThreshold 2
        with contextlib.suppress(ModelCallError):
            await service.call_model(role, "x", "creative", params, service.clock() + 5)  # type: ignore[arg-type]
    assert service.breakers[role].state is BreakerState.OPEN  # type: ignore[index]


async def test_a_due_open_breaker_is_probed_and_closes_or_reopens(
    catalog: IngredientCatalog, clock: FakeClock
) -> None:
    fakes = fake_generators()
    metrics = EnsembleMetrics()
    service = EnsembleService(fast_config(), fakes, catalog, metrics, clock=clock)  # type: ignore[arg-type]
    try:
        fakes["creative"].failing = True
        await open_by_failures(service, "creative")
        assert health(metrics, "creative") == 0

        assert await service.probe_open_breakers() == {}  # still within the hold: nothing probed
        calls = len(fakes["creative"].calls)
        clock.advance(HOLD + 1)
        assert await service.probe_open_breakers() == {"creative": False}  # still failing: re-opened
        assert service.breakers["creative"].state is BreakerState.OPEN
        assert service.breakers["creative"].retry_after() == HOLD  # the hold restarted
        assert health(metrics, "creative") == 0
        probe = fakes["creative"].calls[calls]
        assert (probe.max_new_tokens, len(fakes["creative"].calls)) == (1, calls + 1)  # tiny, bounded

        fakes["creative"].failing = False  # the backend heals, no traffic arrives
        clock.advance(HOLD - 1)
        assert await service.probe_open_breakers() == {}
        clock.advance(2)
        assert await service.probe_open_breakers() == {"creative": True}
        assert service.breakers["creative"].state is BreakerState.CLOSED
        assert health(metrics, "creative") == 1
        assert await service.probe_open_breakers() == {}  # closed breakers are not probed
        assert (
            metrics.registry.get_sample_value(
                "artisan_model_calls_total", {"model": "creative", "result": "probe_ok"}
            )
            == 1
        )
        assert all(health(metrics, role) == 1 for role in ("primary", "validator"))
    finally:
        service.close()


async def test_a_hung_probe_times_out_and_counts_as_a_failure(
    catalog: IngredientCatalog, clock: FakeClock
) -> None:
    fakes = fake_generators()
    config = fast_config(breaker={"probeTimeoutSeconds": 0.02, "probeIntervalSeconds": 0})
    service = EnsembleService(config, fakes, catalog, EnsembleMetrics(), clock=clock)  # type: ignore[arg-type]
    gate = threading.Event()
    try:
        service.breakers["validator"].force_open()
        fakes["validator"].gate = gate  # the backend hangs
        clock.advance(HOLD + 1)
        assert await service.probe_open_breakers() == {"validator": False}
        assert service.breakers["validator"].state is BreakerState.OPEN
    finally:
        gate.set()
        service.close()


def test_the_app_runs_the_prober_and_a_downshifted_model_recovers_without_traffic(
    catalog: IngredientCatalog, clock: FakeClock
) -> None:
    fakes = fake_generators()
    config = fast_config(breaker={"probeTimeoutSeconds": 2, "probeIntervalSeconds": 0.002})
    app = create_app(EnsembleSettings(), config=config, generators=fakes, catalog=catalog, clock=clock)  # type: ignore[arg-type]
    with TestClient(app) as client:
        service = app.state.runtime.service
        service.breakers["creative"].force_open()
        assert 'model_health_status{model="fake-creative",role="creative"} 0.0' in client.get("/metrics").text
        clock.advance(HOLD + 1)
        assert wait_until(lambda: service.breakers["creative"].state is BreakerState.CLOSED, timeout=2)
        assert 'model_health_status{model="fake-creative",role="creative"} 1.0' in client.get("/metrics").text
        assert [c.max_new_tokens for c in fakes["creative"].calls] == [1]


async def test_a_slow_but_successful_request_probe_closes_the_breaker(
    catalog: IngredientCatalog, clock: FakeClock
) -> None:
    """A request that is the half-open probe may take its mode's whole timeout (creative 20 s here),
    longer than probeTimeoutSeconds (2 s): its success must close the breaker, not find it re-opened."""
    fakes = fake_generators()
    config = fast_config(
        modes={"creative": {"maxNewTokens": 8, "timeoutSeconds": 20}},
        breaker={"window": 10, "minCalls": 5, "probeTimeoutSeconds": 2, "probeIntervalSeconds": 0},
    )
    service = EnsembleService(config, fakes, catalog, EnsembleMetrics(), clock=clock)  # type: ignore[arg-type]
    try:
        fakes["primary"].failing = True
        await open_by_failures(service, "primary")
        fakes["primary"].failing = False
        clock.advance(HOLD)
        real_generate = fakes["primary"].generate

        def slow(request: GenerationRequest) -> str:
            clock.advance(15)  # within the creative timeout, past the background probe's bound
            # Meanwhile other requests plan their routes (which looks at the breaker).
            assert not service.breakers["primary"].available()
            return real_generate(request)

        fakes["primary"].generate = slow  # type: ignore[method-assign]
        params = service.config.modes.params("creative")
        output = await service.call_model("primary", "x", "creative", params, clock() + 20)
        assert output
        assert service.breakers["primary"].state is BreakerState.CLOSED
    finally:
        service.close()
