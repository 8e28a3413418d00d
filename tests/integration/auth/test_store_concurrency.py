"""The identity store's counters and TOTP claims under real cross-process concurrency.

Two store instances (two PostgreSQL connections) stand for two portal processes; the
in-process RLock does not span them, so only the database can keep these exact.
SQLite runs the same contract (its BEGIN IMMEDIATE lock serialises writers).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from auth._crypto import hash_token
from auth._store import IdentityStore, open_store
from tests.harness.common import wait_until

ROUNDS = 40


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'id.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    yield base.replace("/postgres?", f"/{name}?")


def _totp_user(s: IdentityStore) -> None:
    uid = str(uuid.uuid4())
    s.create_user(
        user_id=uid,
        username="erin",
        display_name="Erin",
        roles=frozenset({"researcher"}),
        status="active",
        locale="en",
        now=1.0,
    )
    s.add_credential(cred_id="c1", user_id=uid, kind="totp", label="app", secret=b"x", now=1.0)


def _race(work: Callable[[IdentityStore], None], stores: list[IdentityStore]) -> None:
    """Run ``work`` ROUNDS times in one thread per store, all released together."""
    start = threading.Barrier(len(stores))
    errors: list[Exception] = []

    def run(s: IdentityStore) -> None:
        start.wait()
        try:
            for _ in range(ROUNDS):
                work(s)
        except Exception as e:  # noqa: BLE001 - surfaced below, never lost in the thread
            errors.append(e)

    ts = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_concurrent_failures_are_all_counted(url: str) -> None:
    a, b = open_store(url=url), open_store(url=url)
    _totp_user(a)
    _race(
        lambda s: s.record_failure(
            cred_id="c1", now=10.0, max_failures=1000, backoff_after=900, backoff_s=30
        ),
        [a, b],
    )
    assert b.get_credential(cred_id="c1").failures == 2 * ROUNDS
    # The back-off and the disabling still follow the exact count.
    after = a.record_failure(
        cred_id="c1", now=20.0, max_failures=2 * ROUNDS + 1, backoff_after=2, backoff_s=30
    )
    assert after.failures == 2 * ROUNDS + 1
    assert after.disabled
    assert after.locked_until == 20.0 + 3600
    a.close()
    b.close()


def test_concurrent_name_failures_are_all_counted(url: str) -> None:
    a, b = open_store(url=url), open_store(url=url)
    key = hash_token("name:nobody")
    _race(
        lambda s: s.record_name_failure(key=key, now=10.0, backoff_after=900, backoff_s=30), [a, b]
    )
    assert a.name_throttle(key=key) == (2 * ROUNDS, 0.0)
    b.record_name_failure(key=key, now=11.0, backoff_after=2, backoff_s=30)
    assert b.name_throttle(key=key) == (2 * ROUNDS + 1, 11.0 + 3600)
    # Stale rows of other names are purged; this name's count survives.
    b.record_name_failure(key="other", now=12.0, backoff_after=5, backoff_s=30)
    b.record_name_failure(key=key, now=12.0 + 31 * 86400, backoff_after=900, backoff_s=30)
    assert b.name_throttle(key="other") == (0, 0.0)
    assert b.name_throttle(key=key)[0] == 2 * ROUNDS + 2
    a.close()
    b.close()


@pytest.mark.postgres
def test_older_totp_step_never_accepted_after_a_newer_one(postgres_url: str) -> None:
    """Process B claims step 1001 and has not committed yet; process A's claim of the
    still-valid step 1000 must wait for B and then be refused (only one accepted)."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = postgres_url.replace("/postgres?", f"/{name}?")
    a = open_store(url=url)
    _totp_user(a)
    b = psycopg.connect(url)  # process B, mid-claim, following the store's protocol
    b.execute("SELECT 1 FROM credentials WHERE id = 'c1' FOR UPDATE")
    b.execute("INSERT INTO totp_used_steps (credential_id, step) VALUES ('c1', 1001)")
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(a.claim_totp_step(cred_id="c1", step=1000)))
    t.start()
    # Poll (with a deadline that only catches a hang) until A is either finished or
    # waiting on B's row lock: the ordering under test must have happened, however slow.
    with psycopg.connect(url, autocommit=True) as watch:

        def settled() -> bool:
            if result:
                return True
            waiting = watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND wait_event_type = 'Lock'",
                (name,),
            ).fetchone()
            return bool(waiting and waiting[0])

        wait_until("A to finish or wait on B's lock", settled, 60, interval=0.01)
    assert not result, "step 1000 was accepted while step 1001 was being claimed"
    b.commit()
    t.join(60)
    assert not t.is_alive(), "A's claim did not finish after B committed"
    assert result == [False]
    b.close()
    a.close()


def test_purge_sessions_deletes_only_dead_ones(url: str) -> None:
    s = open_store(url=url)
    _totp_user(s)
    uid = s.find_user(username="erin").id  # type: ignore[union-attr]
    for name, at in (("anon-old", 10.0), ("anon-new", 500.0), ("user-old", 10.0)):
        s.create_session(id_hash=name, csrf="c", client_ip=None, now=at)
    s.save_session(id_hash="user-old", user_id=uid, state={}, last_seen=10.0, auth_time=10.0)
    s.create_session(id_hash="ended", csrf="c", client_ip=None, now=10.0)
    s.save_session(id_hash="ended", user_id=uid, state={}, last_seen=10.0, auth_time=10.0)
    assert s.end_session(id_hash="ended", now=20.0)
    assert s.purge_sessions(anonymous_idle_before=100.0, ended_before=15.0) == 1
    assert s.get_session(id_hash="anon-old") is None
    assert s.get_session(id_hash="ended") is not None
    assert s.purge_sessions(anonymous_idle_before=100.0, ended_before=25.0) == 1
    assert s.get_session(id_hash="ended") is None
    assert s.get_session(id_hash="anon-new") is not None
    assert s.get_session(id_hash="user-old") is not None  # its end is audited at its next use
    s.close()
