"""Server-side apply of rendered objects, with one field manager.

The one place the backend writes to a cluster. Errors from the API server are
translated into :class:`ClusterError` at this boundary, their payload trimmed to the
server's own one-line message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

from .errors import ClusterError

__all__ = [
    "FIELD_MANAGER",
    "PRUNED_KINDS",
    "SERVER_SIDE_APPLY",
    "SyncResult",
    "apply_objects",
    "prune_objects",
    "server_message",
    "sync_objects",
]

#: The one field manager every write of the controller uses.
FIELD_MANAGER = "enclave-controller"
#: The keyword arguments of a typed client's ``patch_*`` call that make it a
#: server-side apply as :data:`FIELD_MANAGER`, taking over conflicting fields.
SERVER_SIDE_APPLY: dict[str, Any] = {
    "field_manager": FIELD_MANAGER,
    "force": True,
    "_content_type": "application/apply-patch+yaml",
}


def server_message(error: Exception) -> str:
    """The API server's one-line message from an error response, at most 300 characters."""
    body = getattr(error, "body", None)
    try:
        message = str(json.loads(body)["message"]) if body else str(error)
    except (ValueError, KeyError, TypeError):
        message = str(getattr(error, "reason", "")) or type(error).__name__
    return message if len(message) <= 300 else message[:297] + "..."


_DYNAMIC_LOCK = threading.Lock()


def _dynamic(api_client: Any) -> DynamicClient:
    """The one DynamicClient of ``api_client``, made on first use and kept on it.

    Making one reads the discovery cache file (tens of kB of JSON) and may fetch and
    rewrite it; a reconciliation used to make two, which cost measurable CPU with 200
    enclaves. The lock keeps threads from making two at once.
    """
    with _DYNAMIC_LOCK:
        found: DynamicClient | None = getattr(api_client, "_enclave_dynamic_client", None)
        if found is None:
            found = DynamicClient(api_client)  # type: ignore[no-untyped-call]
            api_client._enclave_dynamic_client = found
        return found


def _resource(api_client: Any, api_version: str, kind: str) -> Any:
    """The API resource for ``kind``; looked up under the lock, because a lookup can
    update the discovery cache that all threads share."""
    dynamic = _dynamic(api_client)
    with _DYNAMIC_LOCK:
        return dynamic.resources.get(api_version=api_version, kind=kind)


def _where(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


@contextmanager
def _refusal_named(obj: dict[str, Any]) -> Iterator[None]:
    """The server's refusal of ``obj`` as a :class:`ClusterError` naming the object."""
    try:
        yield
    except ResourceNotFoundError as e:
        raise ClusterError(f"applying {_where(obj)}: the cluster does not serve it") from e
    except (ApiException, DynamicApiError) as e:
        raise ClusterError(f"applying {_where(obj)}: {server_message(e)}") from e


def _server_side_apply(dynamic: Any, resource: Any, obj: dict[str, Any], manager: str) -> Any:
    """Server-side apply of ``obj`` as ``manager``, taking over conflicting fields."""
    return dynamic.server_side_apply(
        resource, body=obj, field_manager=manager, force_conflicts=True
    )


def apply_objects(
    *, api_client: Any, objects: Sequence[dict[str, Any]], field_manager: str = FIELD_MANAGER
) -> list[dict[str, Any]]:
    """Apply ``objects`` in order (server-side apply, conflicts forced); return what was stored.

    Stops at the first refusal with a :class:`ClusterError` naming the object and the
    server's reason. Objects are applied in the order given, so a caller that puts
    the default-deny policy before any workload never runs a workload unisolated.
    """
    dynamic = _dynamic(api_client)
    stored: list[dict[str, Any]] = []
    for obj in objects:
        with _refusal_named(obj):
            resource = _resource(api_client, obj["apiVersion"], obj["kind"])
            result = _server_side_apply(dynamic, resource, obj, field_manager)
        stored.append(result.to_dict())
    return stored


def _contains(have: Any, want: Any) -> bool:
    """Whether ``have`` (a live object) already holds every value of ``want`` (ours)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            k in have and _contains(have[k], v) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(_contains(h, w) for h, w in zip(have, want, strict=True))
        )
    return bool(have == want)


@dataclass(frozen=True, kw_only=True)
class SyncResult:
    """Which objects had to be written (missing or drifted) and which already held."""

    written: tuple[str, ...]
    unchanged: tuple[str, ...]


def sync_objects(
    *,
    api_client: Any,
    objects: Sequence[dict[str, Any]],
    field_manager: str = FIELD_MANAGER,
    absent: bool = False,
) -> SyncResult:
    """Apply only the objects that are missing or differ from ours; read the rest.

    An object whose live form already contains every field and value we render
    (lists compared whole, in order) is left alone, so a settled enclave costs reads
    and no writes. In order, stopping at the first refusal, as :func:`apply_objects`.
    ``absent``: the caller knows none of them exists (their namespace did not), so
    each is applied without being read first (a new enclave: 21 reads fewer).
    Limitation: a field we stopped rendering is not removed from a live object that
    still contains everything else.
    """
    dynamic = _dynamic(api_client)
    written: list[str] = []
    unchanged: list[str] = []
    for obj in objects:
        meta = obj["metadata"]
        with _refusal_named(obj):
            resource = _resource(api_client, obj["apiVersion"], obj["kind"])
            live = None
            try:
                if not absent:
                    live = dynamic.get(  # type: ignore[no-untyped-call]
                        resource, name=meta["name"], namespace=meta.get("namespace")
                    ).to_dict()
            except DynamicApiError as e:
                if e.status != 404:
                    raise
            if live is not None and _contains(live, obj):
                unchanged.append(_where(obj))
                continue
            _server_side_apply(dynamic, resource, obj, field_manager)
        written.append(_where(obj))
    return SyncResult(written=tuple(written), unchanged=tuple(unchanged))


#: The kinds an Enclave can stop rendering (a closed enclave, a removed dataset): the
#: reconciler deletes the ones carrying its labels that it no longer renders. Claims
#: are pruned only when they are a dataset's (component ``storage``); workspace
#: volumes are destroyed only at the end of use.
PRUNED_KINDS: tuple[tuple[str, str], ...] = (
    ("networking.k8s.io/v1", "Ingress"),
    ("apps/v1", "Deployment"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "PersistentVolumeClaim"),
)


def prune_objects(
    *, api_client: Any, namespace: str, enclave: str, keep: Sequence[dict[str, Any]]
) -> tuple[str, ...]:
    """Delete what the controller once applied in ``namespace`` and no longer renders.

    Only objects labelled as the controller's for ``enclave`` are candidates, so a
    policy someone else added is never removed here (the isolation check reports it).
    Costs one list per kind; returns what was deleted.
    """
    wanted = {(o["kind"], o["metadata"]["name"]) for o in keep}
    selector = f"app.kubernetes.io/managed-by={FIELD_MANAGER},enclave.dev/enclave={enclave}"
    deleted: list[str] = []
    for api_version, kind in PRUNED_KINDS:
        if kind == "PersistentVolumeClaim":
            where = f"{selector},app.kubernetes.io/component=storage"
        else:
            where = selector
        try:
            resource = _resource(api_client, api_version, kind)
            items = resource.get(namespace=namespace, label_selector=where).items
            for item in items:
                name = item.metadata.name
                if (kind, name) in wanted:
                    continue
                try:
                    resource.delete(name=name, namespace=namespace)
                except DynamicApiError as e:
                    if e.status != 404:
                        raise
                deleted.append(f"{kind} {namespace}/{name}")
        except (ApiException, DynamicApiError) as e:
            raise ClusterError(f"pruning {kind}s in {namespace}: {server_message(e)}") from e
    return tuple(deleted)
