"""The client's durable spool against the real service process (issue 3 acceptance):
with the service stopped the client keeps accepting events (bounded, with
back-pressure); after restart all of them arrive, in order, exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audit import EventError
from audit.client import AuditBackpressure, AuditClient, RecordNotDurable
from audit.log import open_log
from tests.harness.audit_service import AuditEnv, ServiceProcess, make_audit_env, sample_event
from tests.harness.common import wait_until


@pytest.fixture
def env(tmp_path: Path) -> AuditEnv:
    return make_audit_env(tmp_path / "audit")


@pytest.fixture
def service(env: AuditEnv) -> Iterator[ServiceProcess]:
    sp = ServiceProcess(env)
    try:
        yield sp.start()
    finally:
        sp.stop()


def _portal_ids_in_log(env: AuditEnv) -> list[str]:
    """Event ids from the portal, in log order (index order)."""
    with open_log(env.store_url) as log:
        n = log.sequenced()
        rows = log.store.entries(0, n)
        return [str(r[2]) for r in rows if r[4] == "portal"]


def test_events_survive_an_outage_and_arrive_in_order_exactly_once(
    env: AuditEnv, service: ServiceProcess, tmp_path: Path
) -> None:
    client = AuditClient.http(
        url=service.url,
        token=env.tokens["portal"],
        spool_path=tmp_path / "spool.db",
        batch_size=100,
        max_backoff=0.3,
    )
    sent: list[str] = []
    try:
        # 1. the service is up: events flow
        for i in range(300):
            e = sample_event(actor=f"before{i}@x.example")
            client.emit(e)
            sent.append(e.id)
        assert client.flush(timeout=30), client.last_error
        # 2. the service goes down: the client keeps accepting, into its spool
        service.stop()
        for i in range(700):
            e = sample_event(actor=f"during{i}@x.example")
            (client.record if i % 10 == 0 else client.emit)(e)
            sent.append(e.id)
        wait_until("events to be spooled", lambda: client.pending() >= 700)
        assert not client.flush(timeout=0.5)  # nothing can be delivered now
        wait_until("a failed delivery", lambda: client.last_error is not None)
        assert "unreachable" in str(client.last_error)
        # 3. the service returns: the spool drains, in order
        service.start()
        assert client.flush(timeout=60), client.last_error
    finally:
        client.close()
    logged = _portal_ids_in_log(env)
    assert len(logged) == len(set(logged)) == 1000  # exactly once
    assert logged == sent  # in order


def test_the_spool_survives_a_client_restart(
    env: AuditEnv, service: ServiceProcess, tmp_path: Path
) -> None:
    service.stop()
    spool = tmp_path / "spool.db"
    first = AuditClient.http(url=service.url, token=env.tokens["portal"], spool_path=spool)
    sent = []
    for i in range(50):
        e = sample_event(actor=f"r{i}@x.example")
        first.record(e)  # durable in the spool: the caller may proceed
        sent.append(e.id)
    first.close(flush_timeout=0.2)  # e.g. the portal restarts while audit is down
    service.start()
    second = AuditClient.http(
        url=service.url, token=env.tokens["portal"], spool_path=spool, max_backoff=0.3
    )
    try:
        assert second.flush(timeout=30), second.last_error
    finally:
        second.close()
    assert _portal_ids_in_log(env) == sent


def test_a_full_spool_pushes_back_and_record_fails_closed(
    env: AuditEnv, service: ServiceProcess, tmp_path: Path
) -> None:
    service.stop()
    client = AuditClient.http(
        url=service.url,
        token=env.tokens["portal"],
        spool_path=tmp_path / "spool.db",
        max_spool_events=20,
        max_queue_events=5,
        flush_interval=0.01,
        max_backoff=0.3,
    )
    sent = []
    try:
        for i in range(20):
            e = sample_event(actor=f"r{i}@x.example")
            client.record(e)
            sent.append(e.id)
        with pytest.raises(RecordNotDurable, match="spool is full"):
            client.record(sample_event(), timeout=0.2)
        for _ in range(5):  # the in-memory queue takes a few more, then pushes back
            e = sample_event()
            client.emit(e, timeout=0.2)
            sent.append(e.id)
        with pytest.raises(AuditBackpressure):
            client.emit(sample_event(), timeout=0.2)
        assert client.pending() == 25  # bounded: spool 20 + queue 5
        service.start()
        assert client.flush(timeout=30), client.last_error
    finally:
        client.close()
    assert _portal_ids_in_log(env) == sent


def test_a_service_killed_mid_stream_loses_and_duplicates_nothing(
    env: AuditEnv, service: ServiceProcess, tmp_path: Path
) -> None:
    """SIGKILL while batches are in flight: some acknowledgements are lost; re-sent
    batches are recognised by event id."""
    client = AuditClient.http(
        url=service.url,
        token=env.tokens["portal"],
        spool_path=tmp_path / "spool.db",
        batch_size=50,
        max_backoff=0.3,
    )
    sent = []
    try:
        for round_ in range(3):
            for i in range(400):
                e = sample_event(actor=f"k{round_}-{i}@x.example")
                client.emit(e)
                sent.append(e.id)
            wait_until("delivery to begin", lambda: client.pending() < 350)
            service.kill()
            service.start()
        assert client.flush(timeout=60), client.last_error
    finally:
        client.close()
    logged = _portal_ids_in_log(env)
    assert len(logged) == len(set(logged))
    assert logged == sent


def test_local_mode_appends_straight_into_the_store_in_order(env: AuditEnv) -> None:
    with AuditClient.local(store_url=env.store_url, signer_key_path=env.key_path) as client:
        emitted = [sample_event(actor=f"e{i}@x.example") for i in range(500)]
        for e in emitted:
            client.emit(e.to_dict())
        decision = sample_event(action="session.started", details={}, outcome="success")
        client.record(decision)
        # durable when record returns, and after everything emitted before it
        assert _portal_ids_in_log(env) == [e.id for e in emitted] + [decision.id]
        later = sample_event()
        client.emit(later)
    assert _portal_ids_in_log(env) == [e.id for e in emitted] + [decision.id, later.id]


def test_a_bad_event_is_refused_at_hand_over_not_spooled(env: AuditEnv, tmp_path: Path) -> None:
    from audit.errors import EventError

    client = AuditClient.http(
        url="http://127.0.0.1:9", token=env.tokens["portal"], spool_path=tmp_path / "s.db"
    )
    try:
        bad = sample_event().to_dict() | {"actor": ""}
        with pytest.raises(EventError, match="actor"):
            client.emit(bad)
        with pytest.raises(EventError, match="actor"):
            client.record(bad)
        assert client.pending() == 0
    finally:
        client.close(flush_timeout=0)


def test_an_action_its_source_may_not_send_is_refused_at_hand_over(
    env: AuditEnv, tmp_path: Path
) -> None:
    from audit.errors import EventError

    client = AuditClient.http(
        url="http://127.0.0.1:9", token=env.tokens["portal"], spool_path=tmp_path / "s.db"
    )
    try:
        forged = sample_event(action="audit.read", details={"view": "search"})
        with pytest.raises(EventError, match=r"may not send 'audit\.read'"):
            client.emit(forged)
        with pytest.raises(EventError, match=r"may not send 'audit\.read'"):
            client.record(forged)
        assert client.pending() == 0
    finally:
        client.close(flush_timeout=0)


def test_an_event_of_another_source_is_refused_at_hand_over_and_the_rest_flow(
    env: AuditEnv, service: ServiceProcess, tmp_path: Path
) -> None:
    client = AuditClient.http(
        url=service.url,
        token=env.tokens["portal"],
        spool_path=tmp_path / "spool.db",
        max_backoff=0.3,
        source="portal",
    )
    sent = []
    try:
        for i in range(30):
            if i == 17:
                with pytest.raises(EventError, match="another source"):
                    client.emit(sample_event(source="hub"))
                continue
            e = sample_event()
            client.emit(e)
            sent.append(e.id)
        assert client.flush(timeout=30), client.last_error
        assert client.dead_letters() == []
    finally:
        client.close()
    assert _portal_ids_in_log(env) == sent


def test_a_token_of_another_source_keeps_every_event_and_says_why(
    env: AuditEnv, service: ServiceProcess, tmp_path: Path
) -> None:
    # A misconfigured token (the hub's, given to the portal): nothing may be set
    # aside silently; the events wait in the spool and last_error names the cause.
    client = AuditClient.http(
        url=service.url,
        token=env.tokens["hub"],
        spool_path=tmp_path / "spool.db",
        max_backoff=0.2,
    )
    try:
        for _ in range(5):
            client.record(sample_event())
        wait_until("a refused delivery", lambda: client.last_error is not None)
        assert not client.flush(timeout=0.5)
        assert client.pending() == 5
        assert client.dead_letters() == []
        assert "403" in str(client.last_error)
    finally:
        client.close(flush_timeout=0)
