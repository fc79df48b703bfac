"""Schemathesis against the ensemble's OpenAPI schema: no generated request may cause a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from artisan_common.catalog import IngredientCatalog
from artisan_ensemble.app import create_app
from artisan_ensemble.settings import EnsembleSettings

from .conftest import fake_generators, fast_config


@pytest.fixture
def api_schema(catalog: IngredientCatalog) -> Iterator[Any]:
    app = create_app(
        EnsembleSettings(admin_token="fuzz-token"),  # type: ignore[arg-type]
        config=fast_config(queue={"maxConcurrent": 2, "maxWaiting": 50}),
        generators=fake_generators(),  # type: ignore[arg-type]
        catalog=catalog,
    )
    with TestClient(app):  # runs the lifespan: the service is up while schemathesis calls the app
        yield schemathesis.openapi.from_asgi("/openapi.json", app), app


MAX_EXAMPLES = 12


def test_no_server_errors(api_schema: Any) -> None:
    schema, app = api_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/briefs",
        "/v1/formulas",
        "/v1/feedback",
        "/v1/chat/completions",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def no_5xx(case: Any) -> None:
            response = case.call()
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)

        no_5xx()
    calls = app.state.metrics.requests
    briefs = sum(
        sample.value
        for metric in calls.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["route"] == "/v1/briefs"
    )
    assert briefs >= MAX_EXAMPLES // 2  # the fuzzer really reached the app
