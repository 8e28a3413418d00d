"""The reconciler: kopf for the event loop, the kubernetes client for writes.

``build_registry`` registers the handlers for ``enclaves.enclave.dev`` in a registry
of their own (importing this module registers nothing globally); ``run_operator``
runs kopf with them until ``stop_flag`` is set. Built here: create/update/resume
and a level-triggered timer all run ``reconcile_enclave``; one finalizer
(``enclave.dev/cleanup``) holds deletion until the end of use is done (volumes
destroyed, record acknowledged by the audit service, namespace gone); watch and
client timeouts are set; cluster errors are temporary (retried with backoff), an
invalid spec is permanent. ``run_elected`` runs it only while holding the Lease.

A change to or deletion of one of the controller's NetworkPolicies (a watch event
``MODIFIED`` or ``DELETED``; its owner reference names the Enclave) reconciles that
Enclave at once, so a tampered policy is put back without waiting for the timer (#16
wants it within 10 s; the timer's default interval is 30 s). Creations are not
watched for: the controller's own creations would reconcile every new enclave again.
The timer stays the backstop for every other kind of drift and for a missed event.

kopf runs timers in tasks of their own, beside the change handlers, and hands each
the body from its watch stream, which can be older than the object. So every handler
holds the Enclave's lock for the whole reconciliation and works from the object as
the API server returns it then, never from the event's body: two reconciliations of
one Enclave never interleave, and a status is never judged "unchanged" against a
copy that a newer write has already replaced.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client

from policies import Catalog

from ._apply import server_message
from ._kopf import kopf
from ._lifecycle import AuditUnavailableError
from ._live import MANAGED_BY
from ._ops import LeaseElector, Metrics
from ._reconcile import Lifecycle, end_of_use, reconcile_enclave
from ._schema import GROUP, KIND, PLURAL, VERSION
from ._settings import HubConfig, RenderSettings
from ._spec import load_enclave
from ._status import Outcome, write_status
from .errors import ClusterError, InvalidEnclaveError

__all__ = [
    "FINALIZER",
    "OperatorConfig",
    "build_registry",
    "reconcile_latest",
    "run_elected",
    "run_operator",
]

FINALIZER = "enclave.dev/cleanup"


class _PerName:
    """One lock per Enclave name: its handlers (threads) run one at a time."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def __call__(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())


@dataclass(frozen=True, kw_only=True)
class OperatorConfig:
    """What the reconciler needs; ``api_client`` carries the credentials kopf logs in with."""

    api_client: Any
    catalog: Catalog
    settings: RenderSettings
    hub_config: HubConfig | None = None
    #: Seconds between level-triggered reconciliations of every Enclave (drift, expiry).
    resync_interval_s: float = 30.0
    #: Seconds before a failed reconciliation is retried.
    retry_delay_s: float = 5.0
    #: The audit client, the portal's admin API and the expiry grace period.
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    #: Where reconciliations are counted and timed (None: not measured).
    metrics: Metrics | None = None
    #: The controller's clock (tests move it past ``notAfter``).
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: Serialises the handlers of one Enclave (see the module docstring).
    lock_for: _PerName = field(default_factory=_PerName, repr=False, compare=False)


def _fresh(config: OperatorConfig, name: str) -> dict[str, Any] | None:
    """The Enclave as the API server has it now (None once it is gone)."""
    try:
        found = client.CustomObjectsApi(config.api_client).get_cluster_custom_object(
            GROUP, VERSION, PLURAL, name
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise kopf.TemporaryError(
            f"reading Enclave {name}: {server_message(e)}", delay=config.retry_delay_s
        ) from e
    return dict(found)


def _login(config: OperatorConfig) -> kopf.ConnectionInfo:
    """kopf's connection from the same configuration the writes use."""
    c = config.api_client.configuration
    header = c.get_api_key_with_prefix("BearerToken") or c.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=c.host,
        ca_path=c.ssl_ca_cert,
        insecure=not c.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=c.cert_file,
        private_key_path=c.key_file,
    )


def _reconcile(config: OperatorConfig, body: kopf.Body) -> None:
    """One reconciliation, measured; errors become kopf's permanent or temporary kinds."""
    metrics = config.metrics
    started = time.monotonic()
    try:
        outcome = reconcile_latest(config, str(body["metadata"]["name"]))
        if outcome is not None:
            _report(config, body, outcome)
    except kopf.TemporaryError as e:
        if metrics is not None:
            metrics.errors.labels(reason=_reason(e)).inc()
        raise
    except kopf.PermanentError:
        if metrics is not None:
            metrics.errors.labels(reason="InvalidSpec").inc()
        raise
    finally:
        if metrics is not None:
            metrics.reconcile_seconds.observe(time.monotonic() - started)


def _owning_enclave(policy: kopf.Body) -> kopf.Body | None:
    """The Enclave a NetworkPolicy belongs to, as a body for Events (None: not ours)."""
    for ref in policy.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("apiVersion") == f"{GROUP}/{VERSION}" and ref.get("kind") == KIND:
            raw = {
                "apiVersion": ref["apiVersion"],
                "kind": KIND,
                "metadata": {"name": ref["name"], "uid": ref["uid"]},
            }
            return kopf.Body(cast(kopf.RawBody, raw))
    return None


def _policy_event(config: OperatorConfig, event: kopf.RawEvent) -> None:
    """A policy of an enclave was changed or deleted: reconcile that enclave now."""
    if event.get("type") not in ("MODIFIED", "DELETED"):
        return
    enclave = _owning_enclave(kopf.Body(event["object"]))
    if enclave is None:
        return
    # kopf logs an error raised here and does not retry it; the timer reconciles again.
    _reconcile(config, enclave)


def _reason(error: Exception) -> str:
    cause = error.__cause__
    return "ClusterError" if isinstance(cause, ClusterError) else "Waiting"


def reconcile_latest(config: OperatorConfig, name: str) -> Outcome | None:
    """Reconcile the Enclave ``name`` as the API server has it now, holding its lock.

    None when it no longer exists or is being deleted. Cluster and audit outages are
    kopf's temporary errors.
    """
    with config.lock_for(name):
        document = _fresh(config, name)
        if document is None or document["metadata"].get("deletionTimestamp"):
            # Gone, or being deleted: the end of use is the delete handler's.
            return None
        try:
            outcome = reconcile_enclave(
                api_client=config.api_client,
                document=document,
                catalog=config.catalog,
                settings=config.settings,
                hub_config=config.hub_config,
                lifecycle=config.lifecycle,
                now=config.clock(),
            )
        except (ClusterError, AuditUnavailableError) as e:
            raise kopf.TemporaryError(str(e), delay=config.retry_delay_s) from e
    if config.metrics is not None:
        config.metrics.set_phase(name, outcome.phase)
        config.metrics.drift_repairs.inc(len(outcome.repaired))
    return outcome


def _report(config: OperatorConfig, body: kopf.Body, outcome: Outcome) -> None:
    """Kubernetes Events for what changed; kopf's error kinds for what must be retried."""
    if outcome.repaired:
        kopf.warn(
            body,
            reason="DriftRepaired",
            message=f"network isolation had drifted; re-applied {', '.join(outcome.repaired)}",
        )
    if outcome.status_written:
        summary = ", ".join(f"{c.type}={c.status}" for c in outcome.conditions)
        kopf.info(body, reason=outcome.phase, message=summary)
    if outcome.permanent:
        raise kopf.PermanentError(outcome.conditions[0].message)
    if outcome.waiting:
        why = outcome.waiting_for or outcome.conditions[-1].message
        raise kopf.TemporaryError(why, delay=config.retry_delay_s)
    # Nothing is returned: kopf would store a result under status, which the schema prunes.


def _cleanup(config: OperatorConfig, body: kopf.Body) -> None:
    """The end of use: volumes destroyed, record confirmed, namespace gone; then the
    finalizer is released (by kopf, when this returns). Until then the status says
    what it waits for."""
    name = str(body["metadata"]["name"])
    with config.lock_for(name):
        document = _fresh(config, name)
        if document is not None:
            _end(config, document)


def _end(config: OperatorConfig, document: dict[str, Any]) -> None:
    name = str(document["metadata"]["name"])
    try:
        enclave = load_enclave(document, source=f"Enclave {name}")
    except InvalidEnclaveError:
        # Never provisioned (an invalid spec is refused before anything is applied).
        return
    try:
        ended = end_of_use(
            api_client=config.api_client,
            document=document,
            enclave=enclave,
            lifecycle=config.lifecycle,
            reason="the Enclave resource was deleted",
        )
        write_status(
            config.api_client,
            document,
            Outcome(phase="Terminating", conditions=(ended.condition,)),
            config.clock(),
        )
    except ClusterError as e:
        raise kopf.TemporaryError(str(e), delay=config.retry_delay_s) from e
    if ended.waiting:
        if config.metrics is not None:
            config.metrics.errors.labels(reason=ended.condition.reason).inc()
        raise kopf.TemporaryError(ended.condition.message, delay=config.retry_delay_s)
    if config.metrics is not None:
        config.metrics.set_phase(name, None)


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """The handlers, registered in a registry of their own."""
    registry = kopf.OperatorRegistry()
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return _login(config)

    @kopf.on.resume(*resource, registry=registry)
    @kopf.on.create(*resource, registry=registry)
    @kopf.on.update(*resource, field="spec", registry=registry)
    def changed(body: kopf.Body, **_: Any) -> None:
        _reconcile(config, body)

    # The first round one interval after kopf starts serving the Enclave, not at once:
    # the create or resume handler has just reconciled it (at once, it doubled the
    # reconciliations of 200 new enclaves).
    @kopf.timer(
        *resource,
        interval=config.resync_interval_s,
        initial_delay=config.resync_interval_s,
        registry=registry,
    )
    def resync(body: kopf.Body, **_: Any) -> None:
        _reconcile(config, body)

    @kopf.on.event(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        labels={MANAGED_BY[0]: MANAGED_BY[1]},
        registry=registry,
    )
    def policy_changed(event: kopf.RawEvent, **_: Any) -> None:
        _policy_event(config, event)

    @kopf.on.delete(*resource, registry=registry)
    def deleted(body: kopf.Body, **_: Any) -> None:
        _cleanup(config, body)

    return registry


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="enclave.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="enclave.dev", key="last-handled-configuration"
    )
    # kopf's watch can stall silently on a half-dead connection: bound every wait.
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.posting.level = 20  # Events for INFO and above
    return settings


def run_operator(
    config: OperatorConfig,
    *,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
) -> None:
    """Run the reconciler (cluster-wide, standalone) until ``stop_flag`` is set.

    Without ``stop_flag`` (the CLI, in the main thread) it stops on SIGINT or SIGTERM;
    a flag that is never set would keep a thread waiting on it after the stop.
    """
    asyncio.run(
        kopf.operator(
            registry=build_registry(config),
            settings=operator_settings(),
            standalone=True,
            clusterwide=True,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    )


def run_elected(
    config: OperatorConfig,
    *,
    elector: LeaseElector,
    stop_flag: threading.Event,
    log: Callable[[str], None],
) -> bool:
    """Run the reconciler only while ``elector`` holds the Lease; True when it was lost."""

    def run(lost: threading.Event) -> None:
        if config.metrics is not None:
            config.metrics.leader.set(1)
        # kopf in a thread of its own: the main thread keeps the signals (they set
        # ``stop_flag``, which sets ``lost``, which stops kopf).
        worker = threading.Thread(
            target=run_operator, args=(config,), kwargs={"stop_flag": lost}, daemon=True
        )
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.5)
        finally:
            if config.metrics is not None:
                config.metrics.leader.set(0)

    return elector.lead(stop=stop_flag, run=run, log=log)
