"""Whole-log verifications run by the service: started by an officer, or on a schedule.

Called by the officer UI (``start_verify``) and by the service's own loop
(``run_scheduled_verify``, every ``verify_interval_seconds``). Each one checks every
leaf, stored hash, tile and checkpoint signature of one consistent snapshot against
the service's own verifier key, and records its start and its result in the log. Only
scheduled results reach the unauthenticated metrics (officer activity never does):
``enclave_audit_scheduled_verifications_total{result}`` is what operators alert on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._events import Event
from .._verify import verify_store
from ..errors import AuditError
from ._errors import QuotaExceeded, ServiceError
from ._state import ServiceState, VerifyJob

__all__ = ["SCHEDULE_ACTOR", "run_scheduled_verify", "start_verify"]

_log = logging.getLogger("audit.service.verify")

#: the actor of a verification the service ran on its own schedule
SCHEDULE_ACTOR = "service:schedule"


def run_scheduled_verify(st: ServiceState) -> VerifyJob | None:
    """One scheduled verification, run in the calling thread (the service's loop runs
    it on a worker thread); None when the previous scheduled one is still running.

    Its start and result are recorded like an officer's (actor ``service:schedule``);
    its result also goes to the scheduled-verification metrics."""
    size = int(st.log.size())
    job = VerifyJob(id=uuid.uuid4().hex, started=time.time(), total=size, officer=SCHEDULE_ACTOR)
    with st.verify_lock:
        if any(j.finished is None and j.officer == SCHEDULE_ACTOR for j in st.verify_jobs.values()):
            return None
        st.verify_jobs[job.id] = job
        _prune(st)
    with _no_record_no_job(st, job):
        started = _started(job, client_ip=None)
        st.writer.submit([started], client="(service)").result(timeout=60)
    _run_verify(st, job, SCHEDULE_ACTOR, None)
    st.metrics.scheduled_verifications.labels(result="ok" if job.ok else "failed").inc()
    st.metrics.last_scheduled_verification_ok.set(1.0 if job.ok else 0.0)
    st.metrics.last_scheduled_verification_time.set(job.finished or time.time())
    if not job.ok:
        _log.error("scheduled verification %s FAILED: %s", job.id, job.message)
    return job


def _started(job: VerifyJob, *, client_ip: str | None) -> Event:
    """``audit.verify.started`` for ``job``, by whoever started it."""
    return Event.new(
        source="audit",
        actor=job.officer,
        action="audit.verify.started",
        outcome="success",
        client_ip=client_ip,
        details={"size": job.total, "job": job.id},
    )


@contextmanager
def _no_record_no_job(st: ServiceState, job: VerifyJob) -> Iterator[None]:
    """Fail closed: a job whose start could not be recorded is forgotten."""
    try:
        yield
    except BaseException:
        with st.verify_lock:
            st.verify_jobs.pop(job.id, None)
        raise


def _prune(st: ServiceState) -> None:
    """Keep the last hundred finished results readable; the caller holds the lock."""
    for old in [j.id for j in st.verify_jobs.values() if j.finished is not None][:-100]:
        del st.verify_jobs[old]


async def start_verify(st: ServiceState, *, officer_id: str, client_ip: str | None) -> VerifyJob:
    """Run a whole-log verification in a thread; progress lands in ``st.verify_jobs``.

    Issue #12, item 10: at most ``max_verify_jobs_per_officer`` running per officer and
    ``max_verify_jobs`` in all (``QuotaExceeded`` otherwise), and the start is recorded
    as ``audit.verify.started`` before the job runs (no record, no job)."""
    size = int(await st.call(st.log.size))
    job = VerifyJob(id=uuid.uuid4().hex, started=time.time(), total=size, officer=officer_id)
    with st.verify_lock:
        running = [j for j in st.verify_jobs.values() if j.finished is None]
        mine = sum(1 for j in running if j.officer == officer_id)
        if mine >= st.settings.max_verify_jobs_per_officer:
            raise QuotaExceeded(
                f"you already have {mine} verification(s) running; wait for it to finish",
                retry_after=5,
                reason="verify_busy",
            )
        if len(running) >= st.settings.max_verify_jobs:
            raise QuotaExceeded(
                f"{len(running)} verifications are running; retry when one has finished",
                retry_after=5,
                reason="verify_busy",
            )
        st.verify_jobs[job.id] = job  # holds the place while the start is recorded
        _prune(st)
    with _no_record_no_job(st, job):
        await st.append([_started(job, client_ip=client_ip)], client="(ui)")
    threading.Thread(target=_run_verify, args=(st, job, officer_id, client_ip), daemon=True).start()
    return job


def _run_verify(st: ServiceState, job: VerifyJob, officer_id: str, client_ip: str | None) -> None:
    """``verify_store`` over the whole log (every leaf, every stored hash and tile,
    every checkpoint's signature and root), reporting progress into ``job``."""
    first_bad: int | None = None

    def progress(done: int, total: int) -> None:
        job.done, job.total = done, total

    try:
        # Intake goes on: verify_store reads one snapshot of the store, so appends,
        # integration and checkpoints made meanwhile cannot cause a false alarm. Every
        # entry sequenced so far is integrated and signed first, so that the snapshot
        # covers it with a tile, an index row and a checkpoint.
        st.publish_now(trigger="verify")
        # Signatures are checked against the service's own key, never against keys read
        # from the store being checked: whoever can write the store could add their own
        # and re-sign a rewritten history. Without a signing key (no checkpoints are
        # signed), the store's keys are all there is, and the summary says so.
        signer = st.log.signer
        verifiers = [signer.verifier] if signer is not None else None
        # one process: worker processes are not started from inside the service
        report = verify_store(st.log.store, verifiers=verifiers, progress=progress, workers=1)
        job.done = job.total = report.entries
        job.ok = report.ok
        job.message = report.summary
        first_bad = report.first_bad_index
    except AuditError as e:
        job.ok = False
        job.message = str(e)
        first_bad = getattr(e, "index", None)
    finally:
        job.finished = time.time()
    _record_verified(st, job, officer_id=officer_id, client_ip=client_ip, first_bad=first_bad)


def _record_verified(
    st: ServiceState,
    job: VerifyJob,
    *,
    officer_id: str,
    client_ip: str | None,
    first_bad: int | None,
) -> None:
    details: dict[str, Any] = {"size": job.total, "result": "ok" if job.ok else "failed"}
    if first_bad is not None:
        details["first_bad_index"] = first_bad
    event = Event.new(
        source="audit",
        actor=officer_id,
        action="audit.verified",
        outcome="success" if job.ok else "failure",
        client_ip=client_ip,
        details=details,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            st.writer.submit([event], client="(service)").result(timeout=30)
            return
        except ServiceError:
            if time.monotonic() > deadline:
                _log.error("could not record the result of verification %s", job.id)
                return
            time.sleep(0.2)  # back-pressure: retry with a deadline
