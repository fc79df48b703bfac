"""kopf handlers: thin adapters that observe, decide (policy/), apply (cluster/) and write status.

Registration pattern (every handler module follows it):

* handlers are plain module-level functions named ``<kind>_<event>`` (``training_run_create``);
* each module exposes ``register(registry: kopf.OperatorRegistry, settings: Settings) -> None``,
  which attaches them with ``kopf.on.<event>(..., id="<kind>_<event>", registry=registry)(fn)``;
* :func:`build_registry` makes a fresh ``kopf.OperatorRegistry`` per operator run and calls the
  ``register`` of every module in :data:`HANDLER_MODULES`, so several operators can run one after
  another in one process, and a control loop is added by listing its module here.

Shared clients never live in module globals: the startup handler puts an ``OperatorContext`` in
``memo`` (see :mod:`artisan_operator.handlers.context`).
"""

from __future__ import annotations

import importlib

import kopf

from artisan_operator.settings import Settings

HANDLER_MODULES: tuple[str, ...] = (
    "startup",
    "training_run",
    "model_pin",
    "canary",
    "ab_experiment",
)
"""(The ModelPin fleet-health loop is registered by ``model_pin``, with the kind's reconcile loop.)"""


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    for name in HANDLER_MODULES:
        importlib.import_module(f"artisan_operator.handlers.{name}").register(registry, settings)
    return registry
