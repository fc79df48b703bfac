"""Write a custom resource's status (the status subresource; never spec)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


def status_write(
    cluster: ClusterClient, plural: str, namespace: str, name: str, patch: Mapping[str, Any]
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The client method and arguments of a merge patch of the status subresource (sent by
    :func:`patch_status` here, or on the event loop by ``cluster.aio``)."""
    method = cluster.custom.patch_namespaced_custom_object_status
    return method, (GROUP, VERSION, namespace, plural, name, {"status": dict(patch)})


def patch_status(
    cluster: ClusterClient, plural: str, namespace: str, name: str, patch: Mapping[str, Any]
) -> None:
    method, args = status_write(cluster, plural, namespace, name, patch)
    discard(
        unvalidated(method)(
            *args,
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
