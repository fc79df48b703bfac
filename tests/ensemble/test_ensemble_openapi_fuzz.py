"""Schemathesis against the ensemble's and the gateway's OpenAPI schemas: no generated request may
cause a 5xx, the admin routes included (fuzzed with the valid token), and the service still serves
afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artisan_common.catalog import IngredientCatalog
from artisan_common.routing import PIN_KEY, PinRoute, serialize
from artisan_ensemble.app import create_app
from artisan_ensemble.gateway.app import create_gateway_app
from artisan_ensemble.settings import EnsembleSettings

from .conftest import fake_generators, fast_config
from .test_ensemble_gateway import STABLE, Fleet, FleetTransport, write_part

MAX_EXAMPLES = 12
ADMIN_TOKEN = "fuzz-token"
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
NORMAL_BRIEF = {"text": "fresh citrus for summer", "userId": "u-1", "mode": "fast"}
VALID_BODIES: dict[str, dict[str, Any]] = {
    "/v1/briefs": NORMAL_BRIEF,
    "/v1/formulas": {
        "brief": {"style": "citrus", "intensity": 0.4, "complexity": 0.5, "noteFamilies": {"citrus": 0.9}}
    },
    "/v1/feedback": {"userId": "u-1", "rating": 8, "responseSeconds": 3.0, "ifraCompliant": True},
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
}


def _operations(schema: Any, keep: Callable[[Any], bool] = lambda op: True) -> list[Any]:
    return [op for op in (result.ok() for result in schema.get_all_operations()) if keep(op)]


def _valid_and_invalid(operation: Any) -> Any:
    """Schema-valid requests, and for a route with a body also invalid ones (which must be a 4xx)."""
    valid = operation.as_strategy()
    if not operation.body:
        return valid  # nothing to make invalid: headers are strings, there are no query parameters
    return valid | operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)


def _call(schema: Any, method: str, path: str, **kwargs: Any) -> Any:
    """One hand-written request through the same in-process client (and lifespan) as the fuzzer."""
    return schema[path][method].Case(**kwargs).call()


def _requests_to(app: FastAPI, route: str) -> float:
    return sum(
        sample.value
        for metric in app.state.metrics.requests.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["route"] == route
    )


# Schemathesis runs an app's lifespan itself (once, on its first request) and ends it at the test's
# teardown, so the fixtures hand it the app and do not start the lifespan a second time.


@pytest.fixture
def ensemble(catalog: IngredientCatalog) -> tuple[Any, FastAPI]:
    app = create_app(
        EnsembleSettings(admin_token=ADMIN_TOKEN),  # type: ignore[arg-type]
        config=fast_config(queue={"maxConcurrent": 2, "maxWaiting": 50}),
        generators=fake_generators(),  # type: ignore[arg-type]
        catalog=catalog,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app), app


def _assert_no_server_errors(operations: list[Any]) -> None:
    """Valid and invalid cases of every operation; none may end in a 5xx."""
    for operation in operations:

        @given(case=_valid_and_invalid(operation))
        @FUZZ_SETTINGS
        def no_5xx(case: Any) -> None:
            response = case.call()
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)

        no_5xx()


SERVICE_PATHS = {"/v1/briefs", "/v1/formulas", "/v1/feedback", "/v1/chat/completions"}
"""The service's routes, which the gateway serves too: the fuzzer must find every one."""


def test_no_server_errors(ensemble: tuple[Any, FastAPI]) -> None:
    schema, app = ensemble
    operations = _operations(schema)
    assert {op.path for op in operations} >= SERVICE_PATHS
    _assert_no_server_errors(operations)
    assert _requests_to(app, "/v1/briefs") >= MAX_EXAMPLES // 2  # the fuzzer really reached the app


def test_admin_routes_with_the_valid_token_and_the_service_recovers(ensemble: tuple[Any, FastAPI]) -> None:
    """Authorized fuzzing reaches the handlers (not just 401/403); a fault it leaves behind is cleared
    through the admin API and the service answers again."""
    schema = ensemble[0]
    operations = _operations(schema, lambda op: op.path.startswith("/admin/"))
    assert {(op.method.upper(), op.path) for op in operations} >= {
        ("POST", "/admin/faults"),
        ("DELETE", "/admin/faults"),
        ("POST", "/admin/cache/clear"),
        ("POST", "/admin/breakers/reset"),
        ("GET", "/admin/state"),
    }
    authorized: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy(), bearer=st.booleans())
        @FUZZ_SETTINGS
        def no_5xx(case: Any, bearer: bool) -> None:
            # The generated auth headers may carry anything; one valid credential is enough (either form).
            case.headers = dict(case.headers or {})
            if bearer:
                case.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
            else:
                case.headers["X-Artisan-Admin-Token"] = ADMIN_TOKEN
            response = case.call()
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)
            assert response.status_code not in (401, 403), (case.method, case.path, response.text)
            authorized.append(response.status_code)

        no_5xx()
    assert 201 in authorized  # at least one fault was really injected

    # Whatever the fuzzer left behind, a brief gets an answer that is not a server error
    # (a fault makes the service downshift or fall back, never 500).
    degraded = _call(schema, "POST", "/v1/briefs", body=NORMAL_BRIEF)
    assert degraded.status_code < 500 or degraded.status_code == 503, degraded.text

    admin = {"X-Artisan-Admin-Token": ADMIN_TOKEN}
    assert _call(schema, "DELETE", "/admin/faults", headers=admin).json() == {"cleared": True}
    assert _call(schema, "POST", "/admin/breakers/reset", headers=admin).status_code == 200
    state = _call(schema, "GET", "/admin/state", headers=admin).json()
    assert state["faults"] == {}
    assert set(state["breakers"].values()) == {"closed"}

    assert _call(schema, "GET", "/readyz").status_code == 200
    brief = _call(schema, "POST", "/v1/briefs", body=NORMAL_BRIEF)
    assert brief.status_code == 200, brief.text
    assert brief.json()["formula"]["ingredients"]


# ---- the gateway role -----------------------------------------------------------------------------------


def _with_fleet(gateway: FastAPI, fleet: Fleet) -> None:
    """The fleet's ensemble apps start and stop with the gateway, on the event loop that serves both."""
    own: Callable[[FastAPI], AbstractAsyncContextManager[None]] = gateway.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for backend in fleet.apps.values():
                await stack.enter_async_context(backend.router.lifespan_context(backend))
            await stack.enter_async_context(own(app))
            yield

    gateway.router.lifespan_context = lifespan


def _gateway(tmp_path: Path, transport: httpx.AsyncBaseTransport) -> FastAPI:
    routing = tmp_path / "routing"
    routing.mkdir()
    write_part(routing, PIN_KEY, serialize(PinRoute(stable=STABLE)))
    settings = EnsembleSettings(role="gateway", routing_dir=routing, routing_poll_seconds=0.1)
    return create_gateway_app(settings, transport=transport)


@pytest.fixture
def gateway(tmp_path: Path, catalog: IngredientCatalog) -> tuple[Any, FastAPI, Fleet]:
    fleet = Fleet(catalog)
    app = _gateway(tmp_path, FleetTransport(fleet))
    _with_fleet(app, fleet)
    return schemathesis.openapi.from_asgi("/openapi.json", app), app, fleet


def test_gateway_no_server_errors(gateway: tuple[Any, FastAPI, Fleet]) -> None:
    """With a healthy fleet behind it, nothing the gateway's schema allows may end in a 5xx."""
    schema, app, fleet = gateway
    operations = _operations(schema)
    assert {op.path for op in operations} >= SERVICE_PATHS | {"/v1/routing"}
    _assert_no_server_errors(operations)
    assert _requests_to(app, "/v1/briefs") >= MAX_EXAMPLES // 2
    assert fleet.hits["stable.ensemble"] >= 1  # valid requests were forwarded to the fleet


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_gateway_unreachable_backend_is_a_documented_503(tmp_path: Path) -> None:
    """The fleet down: every forwarding route answers 503 with Retry-After, as its schema says."""
    app = _gateway(tmp_path, httpx.MockTransport(_unreachable))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    forwarding = _operations(schema, lambda op: op.method.upper() == "POST" and op.path.startswith("/v1/"))
    assert {op.path for op in forwarding} == set(VALID_BODIES)
    for operation in forwarding:
        assert "503" in operation.definition.raw["responses"], operation.path

        @given(case=_valid_and_invalid(operation))
        @FUZZ_SETTINGS
        def only_documented(case: Any) -> None:
            response = case.call()
            if response.status_code >= 500:
                assert response.status_code == 503, (case.path, case.body, response.text)
                assert response.headers.get("retry-after"), case.path  # schemathesis: lowercase names, lists
                assert "unreachable" in response.json()["error"]

        only_documented()
    # Fuzzed bodies are mostly refused (422) before forwarding: one valid request per route tries the fleet.
    for path, body in VALID_BODIES.items():
        response = _call(schema, "POST", path, body=body)
        assert response.status_code == 503, (path, response.text)
        assert response.headers["retry-after"] == ["1"], path
        assert response.json() == {"error": "stable backend unreachable: ConnectError"}
