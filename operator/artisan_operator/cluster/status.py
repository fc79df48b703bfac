"""Write a custom resource's status (the status subresource; never spec)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.cluster.client import MERGE_PATCH, ClusterClient, discard, unvalidated


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch turning ``current`` into ``desired``; ``None`` when they already agree.

    Keys of ``current`` that ``desired`` lacks are removed (set to null): the status is rebuilt
    from the observed world on every pass.
    """
    if dict(current) == dict(desired):
        return None
    patch: dict[str, Any] = {key: None for key in current if key not in desired}
    patch.update(desired)
    return patch


def patch_status(
    cluster: ClusterClient, plural: str, namespace: str, name: str, patch: Mapping[str, Any]
) -> None:
    patch_object_status = unvalidated(cluster.custom.patch_namespaced_custom_object_status)
    discard(
        patch_object_status(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": dict(patch)},
            _content_type=MERGE_PATCH,
            _preload_content=False,
            _request_timeout=cluster.request_timeout,
        )
    )


def read_custom_object(
    cluster: ClusterClient, plural: str, namespace: str, name: str
) -> dict[str, Any] | None:
    """The object as the API server has it now (kopf's cached body may lag our own last write)."""
    return cluster.read(cluster.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name)
