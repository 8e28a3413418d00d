"""The lifecycle steps that are not "apply what we render": closing, wiping, recording.

- ``stop_user_pods``: a closed enclave (suspended or quarantined) keeps no single-user
  server running (the hub and proxy Deployments are scaled to zero by the render).
- ``PortalUnavailableError``: the portal's admin API could not be used (the portal
  registration and the members' sessions are in ``_identity.py``).
- ``destroy_volumes``: deletes every claim in the enclave's namespace (workspace
  homes, the hub's database, the dataset bindings) and reports how many remain.
- ``lifecycle_event``: the one place audit events of the controller are built
  (``source=controller``); an action that is not registered yet gives ``None``.
- ``AuditRecorder.confirm``: hands an event over and waits until the audit service
  has acknowledged it; the end-of-use record must be in the log before the data goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from audit.client import AuditClient, ClientError
from audit.events import Event, action_spec, utc_now

from ._apply import server_message
from ._live import no_such_enclave
from .errors import ClusterError, ControllerError

__all__ = [
    "WANTED_ACTIONS",
    "AuditRecorder",
    "AuditUnavailableError",
    "PortalUnavailableError",
    "destroy_volumes",
    "lifecycle_event",
    "set_quarantine",
    "stop_user_pods",
    "whoami",
]


class AuditUnavailableError(ControllerError):
    """The audit service has not acknowledged a record the next step depends on."""


class PortalUnavailableError(ControllerError):
    """The portal's admin API could not be used (registration or sessions)."""


def stop_user_pods(*, api_client: Any, namespace: str, enclave: str) -> int:
    """Delete the enclave's pods that are still there; reads only when there are none."""
    core = client.CoreV1Api(api_client)
    selector = f"app.kubernetes.io/instance={enclave}"
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        live = [
            str(p.metadata.name) for p in pods if p.metadata and not p.metadata.deletion_timestamp
        ]
        for pod in live:
            core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
    except client.ApiException as e:
        if e.status == 404:
            return 0
        raise ClusterError(f"stopping the pods of {namespace}: {server_message(e)}") from e
    return len(live)


def destroy_volumes(*, api_client: Any, namespace: str) -> int:
    """Delete every claim in ``namespace``; return how many still exist (0: all gone).

    The claims' storage is released by its reclaim policy (``Delete`` for the
    workspace's dynamically provisioned volumes; a dataset's volume is the
    custodian's and is kept).
    """
    core = client.CoreV1Api(api_client)
    try:
        claims = core.list_namespaced_persistent_volume_claim(namespace).items
        for c in claims:
            if c.metadata and not c.metadata.deletion_timestamp:
                core.delete_namespaced_persistent_volume_claim(str(c.metadata.name), namespace)
    except client.ApiException as e:
        if e.status == 404:
            return 0
        raise ClusterError(f"destroying the volumes of {namespace}: {server_message(e)}") from e
    return len(claims)


#: Actions the controller needs, with their detail fields; those not registered in
#: ``audit/_actions.py`` yet are not sent (``lifecycle_event`` gives ``None``) until
#: the registry has them, except the end-of-use record, which falls back to
#: ``enclave.deprovisioned`` (registered) so it is never missing.
WANTED_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "enclave.provisioned": ("tier", "generation", "objects"),
    "enclave.drift_repaired": ("objects",),
    "enclave.suspended": ("reason", "sessions_revoked"),
    "enclave.quarantined": ("reason", "sessions_revoked"),
    "enclave.quarantine_lifted": ("reason",),
    "enclave.end_of_use": ("reason", "tier", "volumes_destroyed", "not_after"),
}
_FALLBACK = {"enclave.end_of_use": "enclave.deprovisioned"}


def lifecycle_event(
    *,
    action: str,
    enclave: str,
    actor: str,
    details: Mapping[str, Any],
    event_id: str,
    outcome: str = "success",
) -> Event | None:
    """The audit event of one controller step (``source=controller``), or ``None``.

    ``event_id`` must be stable for one step (the service ignores an id it holds, so
    a retried step is recorded once).
    """
    if action not in WANTED_ACTIONS:
        raise ValueError(f"{action} is not a controller action")
    name = action
    if action_spec(name) is None:
        name = _FALLBACK.get(action, "")
        if not name or action_spec(name) is None:
            return None
    spec = action_spec(name)
    allowed = set(spec.fields) if spec is not None else set()
    kept = {k: v for k, v in details.items() if k in allowed}
    return Event(
        id=event_id,
        time=utc_now(),
        source="controller",
        actor=actor,
        action=name,
        enclave=enclave,
        outcome=outcome,
        details=kept,
    )


@dataclass(frozen=True, kw_only=True)
class AuditRecorder:
    """The controller's audit client; ``confirm_timeout_s`` bounds one wait."""

    client: AuditClient
    confirm_timeout_s: float = 5.0

    def emit(self, event: Event | None) -> None:
        """Hand over (spooled, durable across restarts); ``None`` is not registered yet."""
        if event is not None:
            try:
                self.client.record(event)
            except ClientError as e:
                raise AuditUnavailableError(f"the audit spool refused {event.action}: {e}") from e

    def confirm(self, event: Event | None) -> None:
        """Hand over and wait for the service's acknowledgement, or raise why not."""
        self.emit(event)
        if not self.client.flush(timeout=self.confirm_timeout_s):
            why = self.client.last_error or "no acknowledgement"
            raise AuditUnavailableError(f"the audit service has not acknowledged it: {why}")


def whoami(*, api_client: Any) -> str:
    """The user name the API server gives these credentials (a SelfSubjectReview)."""
    try:
        review = client.AuthenticationV1Api(api_client).create_self_subject_review(
            client.V1SelfSubjectReview(
                api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
            )
        )
    except client.ApiException as e:
        raise ClusterError(f"asking the cluster who we are: {server_message(e)}") from e
    info = review.status.user_info if review.status else None
    return str(info.username) if info and info.username else "unknown"


def set_quarantine(*, api_client: Any, name: str, reason: str, active: bool) -> None:
    """Set (or lift) ``spec.quarantine`` of Enclave ``name``, saying who and when.

    A blank reason is refused before anything is written.
    """
    from ._schema import GROUP, PLURAL, VERSION, Problem
    from .errors import InvalidEnclaveError

    reason = reason.strip()
    if not reason or len(reason) > 512:
        raise InvalidEnclaveError(
            source=f"enclave {name}",
            problems=[Problem(field="--reason", message="must be 1 to 512 characters, not blank")],
        )
    body = {
        "spec": {
            "quarantine": {
                "active": active,
                "reason": reason,
                "by": whoami(api_client=api_client)[:256],
                "at": utc_now()[:19] + "Z",
            }
        }
    }
    try:
        client.CustomObjectsApi(api_client).patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, name, body
        )
    except client.ApiException as e:
        if e.status == 404:
            raise no_such_enclave(name) from None
        raise ClusterError(f"quarantining Enclave {name}: {server_message(e)}") from e
