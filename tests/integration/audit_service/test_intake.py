"""Intake: atomic batches, per-source tokens, clear 4xx, back-pressure, idempotence."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from fastapi.testclient import TestClient

from audit.log import AuditLog
from audit.tokens import TokenStore
from tests.harness.audit_service import AuditEnv, sample_event

from .conftest import bearer, make_client


def test_a_batch_is_appended_whole_and_answers_durable_indexes(
    client: TestClient, env: AuditEnv, log: AuditLog
) -> None:
    events = [sample_event(actor=f"user{i}@x.example").to_dict() for i in range(100)]
    r = client.post("/v1/events", json={"events": events}, headers=bearer(env.tokens["portal"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"indexes": list(range(100))}
    assert log.sequenced() == 100
    assert [log.stored_event(i).event.id for i in range(100)] == [e["id"] for e in events]


def test_resending_a_batch_appends_nothing_twice(
    client: TestClient, env: AuditEnv, log: AuditLog
) -> None:
    events = [sample_event().to_dict() for _ in range(5)]
    first = client.post("/v1/events", json={"events": events}, headers=bearer(env.tokens["portal"]))
    again = client.post("/v1/events", json={"events": events}, headers=bearer(env.tokens["portal"]))
    assert first.json() == again.json() == {"indexes": [0, 1, 2, 3, 4]}
    assert log.sequenced() == 5


@pytest.mark.parametrize(
    ("mutate", "index", "field", "words"),
    [
        (lambda e: e.update(actor=""), 2, "actor", "must not be empty"),
        (lambda e: e.pop("time"), 2, "time", "missing"),
        (lambda e: e.update(colour="red"), 2, "colour", "unknown field"),
        (lambda e: e.update(action="no.such.action"), 2, "action", "not a registered action"),
        (lambda e: e["details"].update(reason="x" * 70_000), 2, "details.reason", "longer"),
    ],
    ids=["empty-actor", "missing-time", "unknown-field", "unknown-action", "oversize"],
)
def test_a_bad_event_refuses_the_whole_batch_naming_index_and_field(
    client: TestClient, env: AuditEnv, log: AuditLog, mutate, index, field, words
) -> None:
    events = [sample_event().to_dict() for _ in range(4)]
    mutate(events[index])
    r = client.post("/v1/events", json={"events": events}, headers=bearer(env.tokens["portal"]))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["index"] == index
    assert body["field"] == field
    assert f"event {index}" in body["error"]
    assert words in body["error"]
    assert "nothing of the batch was appended" in body["error"]
    assert "Traceback" not in r.text
    assert log.sequenced() == 0


def test_malformed_json_is_400_and_appends_nothing(
    client: TestClient, env: AuditEnv, log: AuditLog
) -> None:
    r = client.post(
        "/v1/events",
        content=b'{"events": [{"id": "a",',
        headers=bearer(env.tokens["portal"]) | {"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["reason"] == "malformed_json"
    assert "not valid JSON" in r.json()["error"]
    assert log.sequenced() == 0


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"events": []}', b'{"events": {}}', b'{"events": [], "extra": 1}', b"null"],
)
def test_a_body_of_the_wrong_shape_is_422(client: TestClient, env: AuditEnv, body: bytes) -> None:
    r = client.post("/v1/events", content=body, headers=bearer(env.tokens["portal"]))
    assert r.status_code == 422
    assert r.json()["field"] == "events"


def test_more_than_1000_events_is_413(client: TestClient, env: AuditEnv, log: AuditLog) -> None:
    events = [sample_event().to_dict() for _ in range(1001)]
    r = client.post("/v1/events", json={"events": events}, headers=bearer(env.tokens["portal"]))
    assert r.status_code == 413
    assert "1001 events; at most 1000" in r.json()["error"]
    assert log.sequenced() == 0


def test_an_oversize_body_is_413_before_parsing(client: TestClient, env: AuditEnv) -> None:
    r = client.post(
        "/v1/events",
        content=b'{"events": ["' + b"x" * (70 * 1024 * 1024) + b'"]}',
        headers=bearer(env.tokens["portal"]),
    )
    assert r.status_code == 413
    assert r.json()["reason"] == "too_large"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer eat_000000000000_" + "A" * 43,
        "Bearer not-a-token",
    ],
    ids=["missing", "empty", "basic", "unknown-id", "malformed"],
)
def test_bad_tokens_are_401_and_append_nothing(
    client: TestClient, log: AuditLog, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = client.post("/v1/events", json={"events": [sample_event().to_dict()]}, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "intake token" in r.json()["error"]
    assert log.sequenced() == 0


def test_a_tampered_token_is_refused(client: TestClient, env: AuditEnv, log: AuditLog) -> None:
    good = env.tokens["portal"]
    bad = good[:-1] + ("A" if good[-1] != "A" else "B")
    r = client.post("/v1/events", json={"events": [sample_event().to_dict()]}, headers=bearer(bad))
    assert r.status_code == 401
    assert log.sequenced() == 0


def test_a_token_may_only_submit_its_own_source(
    client: TestClient, env: AuditEnv, log: AuditLog
) -> None:
    events = [sample_event().to_dict(), sample_event(source="hub").to_dict()]
    r = client.post("/v1/events", json={"events": events}, headers=bearer(env.tokens["portal"]))
    assert r.status_code == 403
    body = r.json()
    assert (body["index"], body["field"], body["reason"]) == (1, "source", "wrong_source")
    assert "only submit events of source 'portal', not 'hub'" in body["error"]
    assert log.sequenced() == 0


def test_revocation_applies_without_a_restart(
    client: TestClient, env: AuditEnv, log: AuditLog
) -> None:
    token = env.tokens["hub"]
    ok = client.post(
        "/v1/events", json={"events": [sample_event(source="hub").to_dict()]}, headers=bearer(token)
    )
    assert ok.status_code == 200
    other = TokenStore(path=env.tokens_path)  # e.g. the `enclave audit token` CLI
    tid = next(r.id for r in other.list() if r.source == "hub")
    other.revoke(token_id=tid)
    deadline = time.monotonic() + 60  # the service looks at the file every RELOAD_SECONDS
    while True:
        r = client.post(
            "/v1/events",
            json={"events": [sample_event(source="hub").to_dict()]},
            headers=bearer(token),
        )
        if r.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r.status_code == 401
    assert log.sequenced() >= 1


def test_rotation_keeps_the_old_token_for_the_grace_period_only(
    client: TestClient, env: AuditEnv
) -> None:
    store = TokenStore(path=env.tokens_path)
    old_id = next(r.id for r in store.list() if r.source == "portal")
    new = store.rotate(token_id=old_id, grace_seconds=0)
    deadline = time.monotonic() + 60  # the service looks at the file every RELOAD_SECONDS
    while True:
        old_r = client.post(
            "/v1/events",
            json={"events": [sample_event().to_dict()]},
            headers=bearer(env.tokens["portal"]),
        )
        if old_r.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    new_r = client.post(
        "/v1/events", json={"events": [sample_event().to_dict()]}, headers=bearer(new.token)
    )
    assert (old_r.status_code, new_r.status_code) == (401, 200)


def test_an_id_reused_for_different_content_is_refused(
    client: TestClient, env: AuditEnv, log: AuditLog
) -> None:
    e = sample_event().to_dict()
    assert (
        client.post(
            "/v1/events", json={"events": [e]}, headers=bearer(env.tokens["portal"])
        ).status_code
        == 200
    )
    forged = dict(e, actor="someone.else@x.example")
    r = client.post(
        "/v1/events",
        json={"events": [sample_event().to_dict(), forged]},
        headers=bearer(env.tokens["portal"]),
    )
    assert r.status_code == 422
    assert r.json()["field"] == "id"
    assert log.sequenced() == 1


def test_back_pressure_is_503_with_retry_after_and_loses_nothing_acknowledged(
    env: AuditEnv, log: AuditLog
) -> None:
    """A writer stuck on a locked store: the next batch is refused at once, not queued."""
    with make_client(env, log, checkpoint_interval_seconds=0, max_pending_batches=1) as client:
        blocker = sqlite3.connect(env.db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock, like a long transaction
        first_events = [sample_event().to_dict() for _ in range(3)]
        result: dict[str, object] = {}

        def send_first() -> None:
            result["r"] = client.post(
                "/v1/events", json={"events": first_events}, headers=bearer(env.tokens["portal"])
            )

        t = threading.Thread(target=send_first)
        t.start()
        state = client.app.state.audit  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while state.writer.pending < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state.writer.pending == 1
        refused_events = [sample_event().to_dict() for _ in range(3)]
        refused = client.post(
            "/v1/events", json={"events": refused_events}, headers=bearer(env.tokens["portal"])
        )
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["reason"] == "backpressure"
        blocker.execute("ROLLBACK")
        blocker.close()
        t.join(timeout=60)
        first = result["r"]
        assert first.status_code in (200, 503), first.text  # type: ignore[attr-defined]
        ids = {log.stored_event(i).event.id for i in range(log.sequenced())}
        if first.status_code == 200:  # type: ignore[attr-defined]
            assert {e["id"] for e in first_events} <= ids
        assert not ({e["id"] for e in refused_events} & ids)


def test_one_token_cannot_take_the_whole_queue(env: AuditEnv, log: AuditLog) -> None:
    """A flooding token is refused with 503 once it holds its share of the queue, while
    another source's batch is still taken; nothing of the refused batch is appended."""
    with make_client(
        env,
        log,
        checkpoint_interval_seconds=0,
        max_pending_batches=8,
        max_pending_batches_per_token=1,
    ) as client:
        blocker = sqlite3.connect(env.db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the writer waits: batches stay pending
        state = client.app.state.audit  # type: ignore[attr-defined]
        sent: dict[str, tuple[list[dict[str, object]], object]] = {}

        def send(name: str, source: str) -> None:
            events = [sample_event(source=source).to_dict() for _ in range(2)]
            sent[name] = (events, None)
            r = client.post(
                "/v1/events", json={"events": events}, headers=bearer(env.tokens[source])
            )
            sent[name] = (events, r)

        def wait_pending(n: int) -> None:
            deadline = time.monotonic() + 60
            while state.writer.pending < n and time.monotonic() < deadline:
                time.sleep(0.01)
            assert state.writer.pending == n

        flood = threading.Thread(target=send, args=("flood", "hub"))
        flood.start()
        wait_pending(1)
        refused_events = [sample_event(source="hub").to_dict() for _ in range(2)]
        refused = client.post(
            "/v1/events", json={"events": refused_events}, headers=bearer(env.tokens["hub"])
        )
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["reason"] == "client_share"
        other = threading.Thread(target=send, args=("other", "portal"))
        other.start()
        wait_pending(2)  # taken, though the queue's first place is the flooder's
        blocker.execute("ROLLBACK")
        blocker.close()
        flood.join(timeout=60)
        other.join(timeout=60)
        ids = {log.stored_event(i).event.id for i in range(log.sequenced())}
        for events, r in sent.values():
            assert r.status_code == 200, r.text  # type: ignore[attr-defined]
            assert {e["id"] for e in events} <= ids
        assert not ({e["id"] for e in refused_events} & ids)
        assert state.writer.pending_of(state.tokens.authenticate_record(env.tokens["hub"]).id) == 0


def test_a_token_issued_for_one_enclave_submits_only_its_events(
    client: TestClient, env: AuditEnv, log: AuditLog
) -> None:
    # A project's hub holds a token for its own enclave: it cannot write another's record.
    issued = TokenStore(path=env.tokens_path).issue(source="hub", enclave="gut-microbiome-2026")
    own = sample_event(source="hub", enclave="gut-microbiome-2026").to_dict()
    other = sample_event(source="hub", enclave="metabolome-2027").to_dict()
    before = log.sequenced()
    deadline = time.monotonic() + 60  # the service looks at the file every RELOAD_SECONDS
    while True:
        r = client.post("/v1/events", json={"events": [own, other]}, headers=bearer(issued.token))
        if r.status_code != 401 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r.status_code == 403
    assert r.json()["reason"] == "wrong_enclave"
    assert r.json()["index"] == 1
    assert "metabolome-2027" in r.json()["error"]
    assert log.sequenced() == before  # nothing of the batch
    unscoped = sample_event(source="hub", enclave=None).to_dict()
    r = client.post("/v1/events", json={"events": [unscoped]}, headers=bearer(issued.token))
    assert r.status_code == 403
    r = client.post("/v1/events", json={"events": [own]}, headers=bearer(issued.token))
    assert r.status_code == 200
    assert log.sequenced() == before + 1
