"""The FastAPI application of either role. ``create_app(settings)`` is the one entry point.

In the ensemble role the lifespan loads every pinned model (in a worker thread, so the loop stays
responsive) before the app takes traffic; a model that fails to load leaves /readyz at 503 naming
it. Tests pass ready-made generators (fakes or tiny models) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from artisan_common.catalog import IngredientCatalog, load_catalog
from artisan_common.feedback_store import FeedbackStore, SQLiteFeedbackStore
from artisan_ensemble.api.errors import install_error_handlers
from artisan_ensemble.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from artisan_ensemble.api.routes import EnsembleRuntime, admin, router
from artisan_ensemble.ensemble.config import PinConfig, PinnedModel, PinnedModels, ServiceConfig
from artisan_ensemble.ensemble.downshift import ROLES, Role
from artisan_ensemble.ensemble.formula import assert_families_match_catalog
from artisan_ensemble.ensemble.ports import FormulaPolicy, TextGenerator
from artisan_ensemble.metrics import EnsembleMetrics
from artisan_ensemble.service import EnsembleService
from artisan_ensemble.settings import EnsembleSettings

log = logging.getLogger("artisan_ensemble")


def discover_pins(models_dir: Path) -> PinConfig:
    """``serve --models DIR`` without a pin file: every role directory present is pinned."""
    from artisan_ensemble.backends.transformers_backend import REVISION_FILE

    found: dict[str, PinnedModel] = {}
    for role in ROLES:
        path = models_dir / role
        if path.is_dir():
            marker = path / REVISION_FILE
            revision = marker.read_text(encoding="utf-8").strip() if marker.is_file() else "local"
            found[role] = PinnedModel(name=role, source=role, revision=revision)
    if "primary" not in found:
        raise ValueError(f"{models_dir}: no primary/ model directory")
    return PinConfig(models=PinnedModels(**found))


def load_generators(
    settings: EnsembleSettings, pins: PinnedModels
) -> tuple[dict[Role, TextGenerator], dict[str, str]]:
    """Load each pinned model; failures are collected per role (the pod stays unready, not crashed)."""
    from artisan_ensemble.backends.transformers_backend import TransformersGenerator, resolve_model_path

    generators: dict[Role, TextGenerator] = {}
    errors: dict[str, str] = {}
    for role in ROLES:
        pin: PinnedModel | None = getattr(pins, role)
        if pin is None:
            continue
        try:
            location = resolve_model_path(
                pin.source,
                pin.revision,
                settings.models_dir,
                settings.pvc_root,
                role=role,
                allow_unverified=settings.allow_unverified_revision,
            )
            if location.verified_by == "unverified":
                log.warning(
                    "the %s model at %s is served as revision %s UNVERIFIED "
                    "(ARTISAN_ENSEMBLE_ALLOW_UNVERIFIED_REVISION is set)",
                    role,
                    location.path,
                    pin.revision,
                )
            generators[role] = TransformersGenerator(
                role,
                pin.name,
                location.path,
                pin.revision,
                source=pin.source,
                commit=location.commit,
                device=settings.device,
                quantization=pin.quantization,
            )
        except Exception as error:
            log.exception("loading the %s model failed", role)
            errors[role] = str(error)
    return generators, errors


def load_policy(settings: EnsembleSettings, catalog: IngredientCatalog) -> FormulaPolicy | None:
    from artisan_ensemble.backends.policy import load_policy_checkpoint, load_policy_from_dir

    if settings.policy_dir is not None:
        return load_policy_from_dir(settings.policy_dir, settings.policy_checkpoint or "best", catalog)
    if settings.policy_checkpoint is None:
        return None
    return load_policy_checkpoint(Path(settings.policy_checkpoint), catalog)


def create_app(
    settings: EnsembleSettings | None = None,
    *,
    config: ServiceConfig | None = None,
    generators: Mapping[Role, TextGenerator] | None = None,
    catalog: IngredientCatalog | None = None,
    policy: FormulaPolicy | None = None,
    store: FeedbackStore | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    settings = settings or EnsembleSettings()
    if settings.role == "gateway":
        from artisan_ensemble.gateway.app import create_gateway_app

        return create_gateway_app(settings)
    config = config or settings.service_config()
    metrics = EnsembleMetrics()
    state = EnsembleRuntime(
        admin_token=settings.admin_token.get_secret_value() if settings.admin_token else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ingredients = catalog or load_catalog(settings.catalog_path)
        assert_families_match_catalog(ingredients)
        loaded: Mapping[Role, TextGenerator]
        formula_policy = policy
        if generators is not None:
            loaded = generators
            state.expected_roles = tuple(generators)
        else:
            pin = settings.load_pin()
            if pin is None:
                if settings.models_dir is None:
                    raise ValueError(
                        "set ARTISAN_ENSEMBLE_PIN_CONFIG or ARTISAN_ENSEMBLE_MODELS_DIR (serve --models)"
                    )
                pin = discover_pins(settings.models_dir)
            state.expected_roles = tuple(r for r in ROLES if getattr(pin.models, r) is not None)
            loaded, state.load_errors = await asyncio.to_thread(load_generators, settings, pin.models)
            from artisan_ensemble.backends.gpu import register_gpu_metrics

            register_gpu_metrics(metrics.registry)
        if formula_policy is None and settings.policy_configured:
            try:
                formula_policy = await asyncio.to_thread(load_policy, settings, ingredients)
            except Exception as error:
                log.warning("formula policy checkpoint unusable, using the heuristic: %s", error)
                state.load_errors["policy"] = str(error)
        state.loaded_roles = tuple(loaded)
        state.policy_description = formula_policy.description if formula_policy is not None else "heuristic"
        state.store = store or SQLiteFeedbackStore(settings.feedback_db or ":memory:")
        if "primary" in loaded:
            state.service = EnsembleService(
                config, loaded, ingredients, metrics, policy=formula_policy, clock=clock
            )
        prober: asyncio.Task[None] | None = None
        interval = config.breaker.probe_interval_seconds
        if state.service is not None and interval > 0:
            prober = asyncio.create_task(state.service.run_prober(interval), name="artisan-breaker-prober")
        try:
            yield
        finally:
            if prober is not None:
                prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prober
            if state.service is not None:
                state.service.close()
            if store is None and state.store is not None:
                state.store.close()

    app = FastAPI(
        title="Artisan ensemble",
        version="0.1.0",
        description="Fragrance briefs from an LLM ensemble, with downshift, cache and backpressure.",
        lifespan=lifespan,
    )
    app.state.runtime = state
    app.state.metrics = metrics
    app.include_router(router)
    app.include_router(admin)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.limits.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
