"""Routing entries written into a ModelPin's routing ConfigMap by the Canary and ABExperiment loops.

Those entries have no owner reference to the Canary or ABExperiment (the ConfigMap belongs to the
ModelPin), so garbage collection cannot remove them: the delete handlers call
:func:`clear_routing_entry`.
"""

from __future__ import annotations

import json

from artisan_common.routing import routing_configmap_name
from artisan_operator.cluster.client import MERGE_PATCH, ClusterClient


def clear_routing_entry(
    cluster: ClusterClient, namespace: str, model_pin: str, *, key: str, field: str, owner_name: str
) -> bool:
    """Set ``key`` to ``null`` if its entry was written by ``owner_name`` (``entry[field]``).

    Returns whether anything was cleared; a missing ConfigMap or a foreign entry is left alone.
    """
    name = routing_configmap_name(model_pin)
    configmap = cluster.read(cluster.core.read_namespaced_config_map, name, namespace)
    if configmap is None:
        return False
    raw = (configmap.get("data") or {}).get(key)
    if not raw or raw == "null":
        return False
    try:
        entry = json.loads(raw)
    except json.JSONDecodeError:
        return False
    if not isinstance(entry, dict) or entry.get(field) != owner_name:
        return False
    cluster.core.patch_namespaced_config_map(
        name,
        namespace,
        {"data": {key: "null"}},
        _content_type=MERGE_PATCH,
        _preload_content=False,
        _request_timeout=cluster.request_timeout,
    )
    return True
