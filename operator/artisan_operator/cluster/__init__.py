"""The only code that talks to the Kubernetes API: observe, apply a plan, write status, clean up."""

from artisan_operator.cluster.apply import ApplyOutcome, apply_child, apply_plan, outcome_events
from artisan_operator.cluster.client import ApiException, ClusterClient, connection_info, load_configuration
from artisan_operator.cluster.observe import observe_model_pin, observe_target, observe_training_run
from artisan_operator.cluster.routing import clear_routing_entry
from artisan_operator.cluster.status import patch_status, read_custom_object, status_patch

__all__ = [
    "ApiException",
    "ApplyOutcome",
    "ClusterClient",
    "apply_child",
    "apply_plan",
    "clear_routing_entry",
    "connection_info",
    "load_configuration",
    "observe_model_pin",
    "observe_target",
    "observe_training_run",
    "outcome_events",
    "patch_status",
    "read_custom_object",
    "status_patch",
]
