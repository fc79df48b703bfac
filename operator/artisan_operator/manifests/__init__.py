"""Pure builders of the children the operator creates (dicts in the Kubernetes wire shape)."""

from artisan_operator.manifests.common import Owner, owner_reference
from artisan_operator.manifests.ensemble import (
    build_ensemble_deployment,
    build_ensemble_service,
    build_pin_configmap,
    build_routing_configmap,
    pin_revision,
)
from artisan_operator.manifests.trainer import (
    build_trainer_configmap,
    build_trainer_job,
    build_trainer_pvc,
    build_trainer_service,
)

__all__ = [
    "Owner",
    "build_ensemble_deployment",
    "build_ensemble_service",
    "build_pin_configmap",
    "build_routing_configmap",
    "build_trainer_configmap",
    "build_trainer_job",
    "build_trainer_pvc",
    "build_trainer_service",
    "owner_reference",
    "pin_revision",
]
