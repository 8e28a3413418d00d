"""Operations: leader election with a Lease, Prometheus metrics, health endpoints.

``LeaseElector`` holds a ``coordination.k8s.io/v1`` Lease: it takes a Lease that is
free or expired and renews its own, every write conditional on the
``resourceVersion`` it read (optimistic concurrency: of two replicas racing, the API
server lets one write). A replica that cannot renew within ``renew_deadline_s``
(shorter than ``lease_duration_s``, the time the others wait) stops reconciling,
so two replicas never both write.

``Metrics`` are named through ``policies.telemetry.metric_name``.
``serve_health`` answers ``/healthz`` (the process runs), ``/readyz`` (the
reconciler is running, or this replica is a standby) and ``/metrics``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import urllib3
from kubernetes import client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from policies.telemetry import metric_name

from ._apply import server_message
from .errors import ClusterError

__all__ = ["LeaseElector", "Metrics", "serve_health"]


def _m(name: str) -> str:
    return metric_name("controller", name)


class Metrics:
    """The controller's metrics in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconcile_seconds = Histogram(
            _m("reconcile_duration_seconds"),
            "Time one reconciliation of one Enclave took.",
            registry=self.registry,
        )
        self.errors = Counter(
            _m("reconcile_errors_total"),
            "Reconciliations that failed or had to wait, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.drift_repairs = Counter(
            _m("drift_repairs_total"),
            "Objects re-applied because the live ones had drifted from the tier.",
            registry=self.registry,
        )
        self.by_phase = Gauge(
            _m("enclaves_entries"),
            "Enclaves by the phase of their last reconciliation.",
            ["phase"],
            registry=self.registry,
        )
        self.leader = Gauge(
            _m("leader_info"),
            "1 while this replica holds the Lease and reconciles.",
            registry=self.registry,
        )
        self._phases: dict[str, str] = {}
        self._lock = threading.Lock()

    def set_phase(self, name: str, phase: str | None) -> None:
        """Record ``name``'s phase (None: the Enclave is gone)."""
        with self._lock:
            if phase is None:
                self._phases.pop(name, None)
            else:
                self._phases[name] = phase
            counts: dict[str, int] = {}
            for p in self._phases.values():
                counts[p] = counts.get(p, 0) + 1
            for p in {*counts, *(s[0] for s in _labels(self.by_phase))}:
                self.by_phase.labels(phase=p).set(counts.get(p, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _labels(gauge: Gauge) -> list[tuple[str, ...]]:
    return [tuple(s.labels.values()) for m in gauge.collect() for s in m.samples]


@dataclass(kw_only=True)
class LeaseElector:
    """One replica's hold on the Lease ``namespace/name``."""

    api_client: Any
    namespace: str
    name: str
    identity: str
    lease_duration_s: int = 15
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    _last_renewed: float = field(default=0.0, init=False)

    def _api(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api_client)

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards."""
        api = self._api()
        now = datetime.now(UTC)
        try:
            try:
                lease = api.read_namespaced_lease(self.name, self.namespace)
            except client.ApiException as e:
                if e.status != 404:
                    raise
                api.create_namespaced_lease(
                    self.namespace,
                    client.V1Lease(
                        metadata=client.V1ObjectMeta(name=self.name),
                        spec=client.V1LeaseSpec(
                            holder_identity=self.identity,
                            lease_duration_seconds=self.lease_duration_s,
                            acquire_time=now,
                            renew_time=now,
                        ),
                    ),
                )
                return self._won()
            spec = lease.spec or client.V1LeaseSpec()
            held = spec.holder_identity
            duration = spec.lease_duration_seconds or 0
            expired = spec.renew_time is None or spec.renew_time + timedelta(seconds=duration) < now
            if held and held != self.identity and not expired:
                return False
            if held != self.identity:
                spec.acquire_time = now
            spec.holder_identity = self.identity
            spec.lease_duration_seconds = self.lease_duration_s
            spec.renew_time = now
            lease.spec = spec  # the resourceVersion read above makes the write conditional
            api.replace_namespaced_lease(self.name, self.namespace, lease)
        except client.ApiException as e:
            if e.status == 409:  # another replica wrote first
                return False
            raise ClusterError(
                f"holding Lease {self.namespace}/{self.name}: {server_message(e)}"
            ) from e
        return self._won()

    def _won(self) -> bool:
        self._last_renewed = time.monotonic()
        return True

    def holder(self) -> str | None:
        try:
            lease = self._api().read_namespaced_lease(self.name, self.namespace)
        except Exception:  # noqa: BLE001 (only for the log line)
            return None
        return lease.spec.holder_identity if lease.spec else None

    def release(self, log: Callable[[str], None] = lambda _: None) -> bool:
        """Give the Lease up at once (on a clean stop), if it is still ours.

        False when the API server refused or could not be reached: then the Lease
        expires on its own after ``lease_duration_s`` and ``log`` says so, since the
        standby cannot take over before that.
        """
        api = self._api()
        try:
            lease = api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                api.replace_namespaced_lease(self.name, self.namespace, lease)
        except client.ApiException as e:
            log(
                f"could not release the Lease {self.namespace}/{self.name} "
                f"({server_message(e)}); it expires in {self.lease_duration_s:.0f} s"
            )
            return False
        except (urllib3.exceptions.HTTPError, OSError) as e:
            log(
                f"could not release the Lease {self.namespace}/{self.name} "
                f"({type(e).__name__}); it expires in {self.lease_duration_s:.0f} s"
            )
            return False
        return True

    def lead(
        self,
        *,
        stop: threading.Event,
        run: Callable[[threading.Event], None],
        log: Callable[[str], None],
    ) -> bool:
        """Wait for the Lease, then ``run(lost)`` while renewing it; True when it was lost.

        ``run`` must return soon after ``lost`` is set (the reconciler's stop flag).
        """
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    break
            except Exception as e:  # noqa: BLE001 (keep waiting; the cluster may come back)
                log(f"leader election: {type(e).__name__}: {e}")
            log(f"waiting for the Lease {self.namespace}/{self.name} held by {self.holder()}")
            stop.wait(self.retry_period_s)
        if stop.is_set():
            return False
        log(f"holding the Lease {self.namespace}/{self.name} as {self.identity}")
        lost = threading.Event()
        halt = threading.Event()

        def renew() -> None:
            while not halt.wait(self.retry_period_s):
                try:
                    ok = self.try_acquire_or_renew()
                except Exception as e:  # noqa: BLE001 (any failure to renew counts; fail closed)
                    log(f"leader election: cannot renew: {type(e).__name__}")
                    ok = False
                if not ok and time.monotonic() - self._last_renewed > self.renew_deadline_s:
                    log("lost the Lease: stopping the reconciler")
                    lost.set()
                    return

        def stopper() -> None:
            stop.wait()
            lost.set()

        renewer = threading.Thread(target=renew, daemon=True)
        watcher = threading.Thread(target=stopper, daemon=True)
        renewer.start()
        watcher.start()
        try:
            run(lost)
        finally:
            halt.set()
            renewer.join()
            self.release(log)
        # kopf may also stop on its own (SIGTERM in the main thread): that is a stop.
        return lost.is_set() and not stop.is_set()


def serve_health(
    *,
    port: int,
    metrics: Metrics,
    ready: Callable[[], bool],
    host: str = "0.0.0.0",  # noqa: S104
) -> ThreadingHTTPServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``port`` in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif self.path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n", "text/plain")
            elif self.path == "/metrics":
                self._send(200, metrics.render(), "text/plain; version=0.0.4")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
