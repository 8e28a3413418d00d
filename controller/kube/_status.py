"""What one reconciliation found (``Outcome``) and writing it to the Enclave's status.

Called by ``reconcile_enclave`` (``_reconcile.py``, step 5 of its docstring) and by the
finalizer's handler in ``operator.py``. ``write_status`` writes through the status
subresource with the controller's one field manager, only when phase, generation or a
condition changed, keeping each unchanged condition's ``lastTransitionTime``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client

from ._apply import SERVER_SIDE_APPLY, server_message
from ._conditions import Condition
from ._schema import GROUP, KIND, PLURAL, VERSION
from .errors import ClusterError

__all__ = ["Outcome", "write_status"]


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one reconciliation found; ``permanent`` when retrying cannot help."""

    phase: str
    conditions: tuple[Condition, ...]
    permanent: bool = False
    status_written: bool = False
    #: Objects that were missing or differed from ours and were applied.
    written: tuple[str, ...] = ()
    #: Of those, the ones that repaired drifted network isolation.
    repaired: tuple[str, ...] = ()
    #: A lifecycle step is waiting for something (the caller retries soon) ...
    waiting: bool = False
    #: ... and what (empty: the last condition's message says it).
    waiting_for: str = ""


def write_status(
    api_client: Any, document: Mapping[str, Any], outcome: Outcome, now: datetime
) -> Outcome:
    """Write ``status`` when it differs from what is there; keep unchanged conditions' times."""
    current = document.get("status") or {}
    previous = {c.get("type"): c for c in current.get("conditions") or []}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = []
    for c in outcome.conditions:
        old = previous.get(c.type) or {}
        same = old.get("status") == c.status
        conditions.append(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message[:32768],
                "observedGeneration": document["metadata"].get("generation", 0),
                "lastTransitionTime": old.get("lastTransitionTime", stamp) if same else stamp,
            }
        )
    status: dict[str, Any] = {
        "phase": outcome.phase,
        "observedGeneration": document["metadata"].get("generation", 0),
        "conditions": conditions,
    }
    if (
        current.get("phase") == status["phase"]
        and current.get("observedGeneration") == status["observedGeneration"]
        and _comparable(current.get("conditions")) == _comparable(conditions)
    ):
        return outcome
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": document["metadata"]["name"]},
        "status": status,
    }
    try:
        client.CustomObjectsApi(api_client).patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            PLURAL,
            document["metadata"]["name"],
            body,
            **SERVER_SIDE_APPLY,
        )
    except client.ApiException as e:
        raise ClusterError(
            f"writing the status of {KIND} {body['metadata']['name']}: {server_message(e)}"
        ) from e
    return dataclasses.replace(outcome, status_written=True)


def _comparable(conditions: Any) -> list[tuple[Any, ...]]:
    return [
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in conditions or []
    ]
