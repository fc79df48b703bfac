"""Gateway role: rendezvous assignment, routing decisions, hot reload, forwarding and variant statistics."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from artisan_common.catalog import IngredientCatalog
from artisan_common.routing import (
    CANARY_KEY,
    EXPERIMENT_KEY,
    PIN_KEY,
    Backend,
    CanaryRoute,
    ExperimentRoute,
    PinRoute,
    RoutingTable,
    VariantRoute,
    serialize,
)
from artisan_common.serving import TrafficMix
from artisan_ensemble.app import create_app
from artisan_ensemble.gateway.assignment import assign
from artisan_ensemble.gateway.decide import assignment_key, decide_route
from artisan_ensemble.settings import EnsembleSettings

from .conftest import fake_generators, fast_config

STABLE = Backend(url="http://stable.ensemble:8080", revision="r1")
CANARY = Backend(url="http://canary.ensemble:8080", revision="r2")
EXPERIMENT = ExperimentRoute(
    experiment="scent-ab",
    salt="s1",
    variants=[
        VariantRoute(name="control", weight=50, mode="balanced"),
        VariantRoute(name="treatment_a", weight=40, mode="creative"),
        VariantRoute(name="treatment_b", weight=10, mode="fast"),
    ],
)


def test_rendezvous_gives_exact_proportions_over_100k_users() -> None:
    weights = {"control": 50.0, "treatment_a": 40.0, "treatment_b": 10.0}
    counts = Counter(assign(f"user-{n}", weights, salt="s1") for n in range(100_000))
    shares = {name: 100 * counts[name] / 100_000 for name in weights}
    for name, weight in weights.items():
        assert abs(shares[name] - weight) <= 1.0, shares


def test_assignment_is_sticky_and_moves_only_the_users_it_must() -> None:
    before = {"control": 50.0, "treatment_a": 40.0, "treatment_b": 10.0}
    after = {"control": 50.0, "treatment_a": 40.0, "treatment_b": 0.0}
    users = [f"user-{n}" for n in range(5_000)]
    first = [assign(u, before, salt="s1") for u in users]
    assert first == [assign(u, before, salt="s1") for u in users]
    second = [assign(u, after, salt="s1") for u in users]
    for old, new in zip(first, second, strict=True):
        assert new != "treatment_b"
        if old != "treatment_b":
            assert new == old  # nobody outside the removed variant moves
    assert [assign(u, before, salt="s2") for u in users] != first  # the salt re-randomizes


@pytest.mark.parametrize(
    ("table", "mode", "expected_mode", "expected_track", "expected_variant"),
    [
        (RoutingTable(pin=PinRoute(stable=STABLE)), "creative", "creative", "stable", "default"),
        (
            RoutingTable(pin=PinRoute(stable=STABLE, mode_ceiling="fast")),
            "creative",
            "fast",
            "stable",
            "default",
        ),
        (
            RoutingTable(pin=PinRoute(stable=STABLE, traffic=TrafficMix(fast=0, balanced=100, creative=0))),
            None,
            "balanced",
            "stable",
            "default",
        ),
        (
            RoutingTable(
                pin=PinRoute(stable=STABLE), canary=CanaryRoute(backend=CANARY, weight=100, canary="c")
            ),
            "fast",
            "fast",
            "canary",
            "default",
        ),
        (
            RoutingTable(
                pin=PinRoute(stable=STABLE), canary=CanaryRoute(backend=CANARY, weight=0, canary="c")
            ),
            "fast",
            "fast",
            "stable",
            "default",
        ),
        (
            RoutingTable(
                pin=PinRoute(stable=STABLE),
                experiment=EXPERIMENT.model_copy(update={"promoted": "treatment_b"}),
            ),
            "creative",
            "fast",
            "stable",
            "treatment_b",
        ),
    ],
)
def test_decide_route(
    table: RoutingTable, mode: Any, expected_mode: str, expected_track: str, expected_variant: str
) -> None:
    decision = decide_route(table, "user-1", mode)
    assert (decision.mode, decision.track, decision.variant) == (
        expected_mode,
        expected_track,
        expected_variant,
    )


def test_mode_mix_and_canary_weight_are_proportional() -> None:
    table = RoutingTable(
        pin=PinRoute(stable=STABLE), canary=CanaryRoute(backend=CANARY, weight=10, canary="c")
    )
    decisions = [decide_route(table, f"u{n}", None) for n in range(20_000)]
    modes = Counter(d.mode for d in decisions)
    tracks = Counter(d.track for d in decisions)
    assert abs(modes["fast"] / 200 - 60) <= 1.5
    assert abs(modes["creative"] / 200 - 10) <= 1.5
    assert abs(tracks["canary"] / 200 - 10) <= 1.5


# ---- the running gateway ------------------------------------------------------------------------------


def write_part(directory: Path, key: str, text: str) -> None:
    tmp = directory / f".{key}.tmp"
    tmp.write_text(text)
    os.replace(tmp, directory / key)


async def wait_for(condition: Any, limit: float = 2.0) -> float:
    """Seconds until condition() is truthy; fails after ``limit`` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await condition():
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {limit}s")


class Fleet:
    """An ensemble app reachable at the STABLE/CANARY URLs through one in-process transport."""

    def __init__(self, catalog: IngredientCatalog) -> None:
        self.apps: dict[str, FastAPI] = {
            host: create_app(
                EnsembleSettings(), config=fast_config(), generators=fake_generators(), catalog=catalog
            )  # type: ignore[arg-type]
            for host in ("stable.ensemble", "canary.ensemble")
        }
        self.transports = {host: httpx.ASGITransport(app=app) for host, app in self.apps.items()}
        self.hits: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hits[request.url.host] += 1
        return await self.transports[request.url.host].handle_async_request(request)


class FleetTransport(httpx.AsyncBaseTransport):
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.fleet.handle_async_request(request)


@pytest.fixture
async def gateway(
    tmp_path: Path, catalog: IngredientCatalog
) -> AsyncIterator[tuple[httpx.AsyncClient, Path, Fleet]]:
    routing = tmp_path / "routing"
    routing.mkdir()
    write_part(routing, PIN_KEY, serialize(PinRoute(stable=STABLE)))
    fleet = Fleet(catalog)
    settings = EnsembleSettings(role="gateway", routing_dir=routing, routing_poll_seconds=0.1)
    from artisan_ensemble.gateway.app import create_gateway_app

    app = create_gateway_app(settings, transport=FleetTransport(fleet))
    stable, canary = fleet.apps.values()
    async with (
        stable.router.lifespan_context(stable),
        canary.router.lifespan_context(canary),
        app.router.lifespan_context(app),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client, routing, fleet


async def test_gateway_forwards_and_hot_reloads_within_two_seconds(
    gateway: tuple[httpx.AsyncClient, Path, Fleet],
) -> None:
    client, routing, fleet = gateway
    assert (await client.get("/readyz")).status_code == 200
    response = await client.post(
        "/v1/briefs", json={"text": "fresh citrus", "userId": "u-1", "mode": "creative"}
    )
    assert response.status_code == 200
    assert response.headers["X-Artisan-Track"] == "stable"
    assert response.json()["mode"]["requested"] == "creative"
    assert fleet.hits["stable.ensemble"] == 1

    write_part(routing, CANARY_KEY, serialize(CanaryRoute(backend=CANARY, weight=100, canary="rollout")))

    async def on_canary() -> bool:
        r = await client.post("/v1/briefs", json={"text": "fresh citrus", "userId": "u-1"})
        return r.headers.get("X-Artisan-Track") == "canary"

    assert await wait_for(on_canary) < 2.0
    assert fleet.hits["canary.ensemble"] >= 1

    # an abort writes weight 0: traffic is back on stable within 2 s
    write_part(routing, CANARY_KEY, serialize(CanaryRoute(backend=CANARY, weight=0, canary="rollout")))

    async def on_stable() -> bool:
        r = await client.post("/v1/briefs", json={"text": "fresh citrus", "userId": "u-1"})
        return r.headers.get("X-Artisan-Track") == "stable"

    assert await wait_for(on_stable) < 2.0

    # OpenAI-compatible chat goes through too, streamed or not
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    plain = await client.post("/v1/chat/completions", json=chat)
    assert plain.json()["object"] == "chat.completion"
    streamed = await client.post("/v1/chat/completions", json={**chat, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert '"usage"' not in streamed.text
    # the gateway re-serializes the body: OpenAI's stream_options must reach the fleet
    options = {"stream": True, "stream_options": {"include_usage": True}}
    with_usage = await client.post("/v1/chat/completions", json={**chat, **options})
    assert '"choices": [], "usage": null' in with_usage.text  # the fakes cannot count: null
    assert "artisan_requests_running 0.0" in (await client.get("/metrics")).text  # relay freed its slot

    # a broken table is not applied: the last good one stays in force
    write_part(routing, PIN_KEY, "{not json")
    await asyncio.sleep(0.3)
    assert (await client.get("/v1/routing")).json()["pin"]["stable"]["url"] == STABLE.url
    assert 'artisan_gateway_routing_reloads_total{result="error"}' in (await client.get("/metrics")).text


async def test_configmap_symlink_swap_is_picked_up(gateway: tuple[httpx.AsyncClient, Path, Fleet]) -> None:
    client, routing, _ = gateway
    # Kubernetes layout: key -> ..data/key, ..data -> ..<timestamp>/ swapped atomically on update.
    for name in (PIN_KEY,):
        (routing / name).unlink()
    first = routing / "..2026_01"
    first.mkdir()
    (first / PIN_KEY).write_text(serialize(PinRoute(stable=STABLE)))
    (routing / "..data").symlink_to(first.name)
    (routing / PIN_KEY).symlink_to(f"..data/{PIN_KEY}")
    (routing / EXPERIMENT_KEY).symlink_to(f"..data/{EXPERIMENT_KEY}")
    second = routing / "..2026_02"
    second.mkdir()
    (second / PIN_KEY).write_text(serialize(PinRoute(stable=STABLE, mode_ceiling="fast")))
    (second / EXPERIMENT_KEY).write_text(serialize(EXPERIMENT))
    (routing / "..data_tmp").symlink_to(second.name)
    os.replace(routing / "..data_tmp", routing / "..data")

    async def swapped() -> bool:
        table = (await client.get("/v1/routing")).json()
        return bool(table.get("experiment")) and table["pin"]["modeCeiling"] == "fast"

    assert await wait_for(swapped) < 2.0


async def test_per_variant_sufficient_statistics(gateway: tuple[httpx.AsyncClient, Path, Fleet]) -> None:
    client, routing, _ = gateway
    write_part(routing, EXPERIMENT_KEY, serialize(EXPERIMENT))

    async def has_experiment() -> bool:
        return bool((await client.get("/v1/routing")).json().get("experiment"))

    await wait_for(has_experiment)
    users = [f"user-{n}" for n in range(30)]
    weights = {v.name: float(v.weight) for v in EXPERIMENT.variants}
    expected = Counter(assign(u, weights, salt="s1") for u in users)
    for user in users:
        response = await client.post("/v1/briefs", json={"text": f"woody {user}", "userId": user})
        assert response.status_code == 200
        variant = response.headers["X-Artisan-Variant"]
        mode = {v.name: v.mode for v in EXPERIMENT.variants}[variant]
        assert response.json()["mode"]["requested"] == mode
    rating = {"userId": "user-0", "ifraCompliant": True, "rating": 4.0, "reward": 0.5, "responseSeconds": 9}
    assert (await client.post("/v1/feedback", json=rating)).status_code == 202
    text = (await client.get("/metrics")).text
    for variant, count in expected.items():
        labels = f'experiment="scent-ab",metric="success",variant="{variant}"'
        assert f"artisan_variant_observations_total{{{labels}}} {float(count)}" in text
        assert f"artisan_variant_sum_total{{{labels}}} {float(count)}" in text
        assert f'ab_test_requests_total{{variant="{variant}"}} {float(count)}' in text
        # The SRM contract: one assignment per brief request (feedback is not a new assignment).
        assignment = f'experiment="scent-ab",variant="{variant}"'
        assert f"artisan_variant_assignments_total{{{assignment}}} {float(count)}" in text
    assert sum(
        value
        for name, value in _samples(text, "artisan_variant_assignments_total")
        if 'experiment="scent-ab"' in name
    ) == len(users)
    first_variant = assign("user-0", weights, salt="s1")
    labels = f'experiment="scent-ab",metric="rating",variant="{first_variant}"'
    assert f"artisan_variant_sum_squares_total{{{labels}}} 16.0" in text


async def test_gateway_validates_and_reports_missing_table(tmp_path: Path) -> None:
    from artisan_ensemble.gateway.app import create_gateway_app

    settings = EnsembleSettings(role="gateway", routing_dir=tmp_path, routing_poll_seconds=0.1)
    app = create_gateway_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://g") as client,
    ):
        assert (await client.get("/readyz")).status_code == 503
        missing = await client.post("/v1/briefs", json={"text": "x"})
        assert missing.status_code == 503
        assert "pin.json" in missing.json()["error"]
        bad = await client.post("/v1/briefs", json={"text": "x", "mode": "warp"})
        assert bad.status_code == 422
        assert bad.json()["field"] == "mode"
    assert json.loads(serialize(EXPERIMENT))["salt"] == "s1"


def _samples(text: str, metric: str) -> list[tuple[str, float]]:
    return [
        (line.rsplit(" ", 1)[0], float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith(metric + "{")
    ]


class HeldUpstream(httpx.AsyncBaseTransport):
    """An ensemble that answers only when released: the gateway's forwards pile up behind it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.arrived = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.arrived += 1
        await self.release.wait()
        body = {"formula": {"ifra": {"compliant": True}}}
        return httpx.Response(200, json=body, headers={"content-type": "application/json"})


async def test_gateway_backpressure_bounded_queue_then_429_with_retry_after(tmp_path: Path) -> None:
    from artisan_ensemble.gateway.app import create_gateway_app

    write_part(tmp_path, PIN_KEY, serialize(PinRoute(stable=STABLE)))
    settings = EnsembleSettings(
        role="gateway",
        routing_dir=tmp_path,
        routing_poll_seconds=0.1,
        gateway_max_concurrent=1,
        gateway_max_waiting=1,
        gateway_retry_after_seconds=2,
    )
    upstream = HeldUpstream()
    app = create_gateway_app(settings, transport=upstream)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as client,
    ):

        async def loaded() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_for(loaded)

        async def brief(n: int) -> httpx.Response:
            return await client.post("/v1/briefs", json={"text": f"held {n}", "userId": f"u{n}"})

        running = asyncio.create_task(brief(0))
        waiting = asyncio.create_task(brief(1))

        async def queue_full() -> bool:
            return upstream.arrived == 1 and "artisan_queue_size 1.0" in (await client.get("/metrics")).text

        await wait_for(queue_full)
        refused = await brief(2)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "2"
        assert upstream.arrived == 1  # the refused request never reached the ensemble
        text = (await client.get("/metrics")).text
        assert "artisan_queue_capacity 1.0" in text
        assert "artisan_requests_running 1.0" in text
        assert 'artisan_requests_rejected_total{reason="overload"} 1.0' in text
        upstream.release.set()
        assert [(await running).status_code, (await waiting).status_code] == [200, 200]
        assert "artisan_queue_size 0.0" in (await client.get("/metrics")).text


BY_SESSION = EXPERIMENT.model_copy(update={"key": "session_id"})


@pytest.mark.parametrize(
    ("experiment", "user", "session", "key"),
    [
        (EXPERIMENT, "u1", "s1", "u1"),
        (BY_SESSION, "u1", "s1", "s1"),
        (BY_SESSION, "u1", None, "u1"),
        (None, "u1", "s1", "u1"),
        (BY_SESSION, None, None, None),
    ],
)
def test_assignment_key(
    experiment: ExperimentRoute | None, user: str | None, session: str | None, key: str | None
) -> None:
    table = RoutingTable(pin=PinRoute(stable=STABLE), experiment=experiment)
    assert assignment_key(table, user, session) == key


async def test_session_assignment_follows_the_session_not_the_user(
    gateway: tuple[httpx.AsyncClient, Path, Fleet],
) -> None:
    client, routing, _ = gateway
    write_part(routing, EXPERIMENT_KEY, serialize(BY_SESSION))

    async def has_session_experiment() -> bool:
        return (await client.get("/v1/routing")).json().get("experiment", {}).get("key") == "session_id"

    await wait_for(has_session_experiment)
    weights = {v.name: float(v.weight) for v in EXPERIMENT.variants}
    sessions = [f"session-{n}" for n in range(20)]
    for session in sessions:
        response = await client.post(
            "/v1/briefs", json={"text": f"woody {session}", "userId": "one-user", "sessionId": session}
        )
        assert response.status_code == 200
        assert response.headers["X-Artisan-Variant"] == assign(session, weights, salt="s1")
    # one user, many sessions: more than one variant (by the user id it would always be one)
    assert len({assign(s, weights, salt="s1") for s in sessions}) > 1
