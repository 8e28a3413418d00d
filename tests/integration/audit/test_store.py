"""The log over a real store, the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest

from audit import (
    AuditLog,
    ConfigError,
    Event,
    EventError,
    InconsistentCheckpointError,
    Query,
    StoreError,
    VerifyReport,
    open_log,
    verify_store,
)
from audit._merkle import leaf_hash, verify_consistency, verify_inclusion
from audit._note import parse_checkpoint
from audit._store_postgres import PostgresStore
from tests.harness.common import tamper_postgres, tamper_sqlite, wait_until
from tests.harness.postgres import PgDatabase


def ev(
    i: int, *, actor: str | None = None, day: int = 25, action: str = "auth.logout", **kw: object
) -> Event:
    return Event(
        id=f"e-{i}",
        time=f"2026-11-{day:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
        source="portal",
        actor=actor or f"user{i % 5}",
        action=action,
        outcome="success",
        enclave=f"proj-{i % 3}",
        **kw,  # type: ignore[arg-type]
    )


def test_sequence_integrate_publish_and_prove(log: AuditLog) -> None:
    assert log.append([ev(i) for i in range(300)]) == list(range(300))
    assert log.size() == 0
    assert log.sequenced() == 300
    assert log.integrate() == 300
    cp1 = log.checkpoint()
    assert (cp1.size, cp1.origin) == (300, "test.enclave/audit")
    assert parse_checkpoint(cp1.text, [log.verifier()]).root_hash == cp1.root_hash
    assert log.checkpoint().text == cp1.text  # same head: the same checkpoint, not a new one
    log.append([ev(i) for i in range(300, 700)])
    log.integrate()
    cp2 = log.checkpoint()
    assert cp2.size == 700
    for i in (0, 1, 255, 256, 299):
        verify_inclusion(
            leaf_hash=leaf_hash(log.entry(i)),
            index=i,
            size=300,
            proof=log.inclusion_proof(i, 300),
            root=cp1.root_hash,
        )
    for i in (0, 511, 512, 699):
        verify_inclusion(
            leaf_hash=leaf_hash(log.entry(i)),
            index=i,
            size=700,
            proof=log.inclusion_proof(i),
            root=cp2.root_hash,
        )
    verify_consistency(
        old_size=300,
        size=700,
        proof=log.consistency_proof(300, 700),
        old_root=cp1.root_hash,
        root=cp2.root_hash,
    )
    assert log.root_hash(300) == cp1.root_hash
    assert [c.size for c in log.checkpoints()] == [300, 700]
    report = verify_store(log.store)
    assert report.ok, report.problems
    assert (report.entries, report.checkpoints) == (700, 2)


def test_append_is_atomic_and_idempotent(log: AuditLog) -> None:
    first = log.append([ev(0), ev(1)])
    assert log.append([ev(1), ev(2)]) == [1, 2]  # a retried event keeps its index
    assert log.append([ev(3), ev(3)]) == [3, 3]
    changed = Event(**{**ev(2).to_dict(), "outcome": "failure"})
    with pytest.raises(EventError, match="already used by a different event"):
        log.append([ev(4), changed])
    assert log.sequenced() == 4  # nothing of the refused batch
    assert first == [0, 1]
    with pytest.raises(EventError):
        log.append(["not an event"])  # type: ignore[list-item]


def test_group_commit_of_concurrent_appenders(log: AuditLog) -> None:
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for b in range(10):
                evs = [ev(t * 10_000 + b * 100 + i) for i in range(20)]
                results[t * 100 + b] = log.append(evs)
        except BaseException as e:  # noqa: BLE001 - collected and asserted on below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    all_idx = sorted(i for r in results.values() for i in r)
    assert all_idx == list(range(6 * 10 * 20))
    for r in results.values():  # each batch got contiguous indexes
        assert r == list(range(r[0], r[0] + 20))
    assert log.integrate() == 1200
    assert verify_store(log.store).ok


def test_query_filters_and_pages(log: AuditLog) -> None:
    log.append([ev(i, day=25 + i % 2) for i in range(600)])
    q = Query(actor="user3", since="2026-11-26T00:00:00Z", until="2026-11-27T00:00:00Z")
    seen: list[int] = []
    cursor = None
    while True:
        page, cursor = log.query(q, cursor=cursor, limit=25)
        seen += [p.index for p in page]
        if cursor is None:
            break
    want = [i for i in range(600) if i % 5 == 3 and i % 2 == 1]
    assert sorted(seen) == want
    assert len(seen) == len(set(seen))
    assert all(log.stored_event(i).event.actor == "user3" for i in seen[:5])
    newest, _ = log.query(Query(enclave="proj-0", newest_first=True), limit=3)
    times = [(p.event.time, p.index) for p in newest]
    assert times == sorted(times, reverse=True)
    assert log.query(Query(outcome="failure"))[0] == []
    assert len(log.query(Query(source="portal", action="auth.logout"), limit=10)[0]) == 10
    with pytest.raises(ConfigError):
        log.query(q, cursor="not-a-cursor")


def test_checkpoint_refused_when_history_changed(
    backend: str, log: AuditLog, request: pytest.FixtureRequest
) -> None:
    """The log never signs a tree inconsistent with a checkpoint it signed before."""
    log.append([ev(i) for i in range(10)])
    log.integrate()
    log.checkpoint()
    # An intruder with owner access rewrites the stored leaf hash of entry 3.
    if backend == "sqlite":
        tamper_sqlite(
            log.store.path,  # type: ignore[attr-defined]
            "UPDATE audit_entries SET leaf_hash = zeroblob(32) WHERE idx = 3",
            "DELETE FROM audit_tree_heads",
        )
    else:
        db: PgDatabase = request.getfixturevalue("pg_migrated")
        tamper_postgres(
            db.admin_url,
            "UPDATE audit_entries SET leaf_hash = decode(repeat('00', 32), 'hex') WHERE idx = 3",
            "DELETE FROM audit_tree_heads",
        )
    log.append([ev(i) for i in range(10, 12)])
    with AuditLog(log.store, signer=log.signer) as fresh:  # a new process's view
        fresh.integrate()
        with pytest.raises(InconsistentCheckpointError):
            fresh.checkpoint()


def test_update_delete_truncate_refused_on_sqlite(tmp_path: Path, key_file: Path) -> None:
    url = f"sqlite://{tmp_path}/a.db"
    with open_log(url, signer_key_path=key_file) as lg:
        lg.append([ev(i) for i in range(256)])  # a row in every table, a full tile included
        lg.integrate()
        lg.checkpoint()
        conn = lg.store._read_conn()  # the application's own connection
        for stmt in (
            "UPDATE audit_entries SET actor = 'x'",
            "DELETE FROM audit_entries",
            "DELETE FROM audit_tree_heads",
            "DROP TABLE audit_entries",
            "DROP TRIGGER audit_entries_no_update",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
                conn.execute(stmt)
    raw = sqlite3.connect(tmp_path / "a.db")  # no authorizer: the triggers still refuse
    for table in (
        "audit_entries",
        "audit_tiles",
        "audit_tree_heads",
        "audit_checkpoints",
        "audit_keys",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE refused"):
            raw.execute(f"UPDATE {table} SET rowid = rowid")  # noqa: S608
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE refused"):
            raw.execute(f"DELETE FROM {table}")  # noqa: S608
    assert raw.execute("SELECT COUNT(*) FROM audit_entries").fetchone() == (256,)


UPDATABLE = {
    "audit_entries": "actor",
    "audit_tiles": "root",
    "audit_tree_heads": "root",
    "audit_checkpoints": "note",
    "audit_keys": "added",
}


def test_update_delete_truncate_refused_on_postgres(
    pg_migrated: PgDatabase, key_file: Path
) -> None:
    with open_log(pg_migrated.writer_url, signer_key_path=key_file) as lg:
        lg.append([ev(i) for i in range(256)])  # a row in every table, a full tile included
        lg.integrate()
        lg.checkpoint()
    tables = ("audit_entries", "audit_tiles", "audit_tree_heads", "audit_checkpoints", "audit_keys")
    for url, why in (
        (pg_migrated.writer_url, "permission denied"),
        (pg_migrated.admin_url, "append-only"),
    ):
        for table in tables:
            col = UPDATABLE[table]
            for stmt in (
                f"UPDATE {table} SET {col} = {col}",  # noqa: S608 (constants)
                f"DELETE FROM {table}",  # noqa: S608
                f"TRUNCATE {table}",
            ):
                with (
                    psycopg.connect(url) as c,
                    pytest.raises(psycopg.errors.InsufficientPrivilege, match=why),
                ):
                    c.execute(stmt.encode())
    # The owner cannot get around the triggers with replication mode either (ENABLE ALWAYS).
    with psycopg.connect(pg_migrated.admin_url) as c:
        c.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: TRUNCATE"):
            c.execute("TRUNCATE audit_entries")
    with psycopg.connect(pg_migrated.writer_url) as c:
        assert c.execute("SELECT COUNT(*) FROM audit_entries").fetchone() == (256,)


def test_migrations_are_versioned_and_explicit(postgres_db: PgDatabase, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="run `enclave audit migrate"):
        open_log(postgres_db.admin_url)  # nothing is created implicitly on PostgreSQL
    store = PostgresStore(postgres_db.admin_url)
    assert store.migrate(writer=postgres_db.writer_role) == [
        "0001_initial",
        "0002_scoped_event_ids",
    ]
    assert store.migrate(writer=postgres_db.writer_role) == []
    assert store.schema_version() == 2
    store.close()
    with open_log(f"sqlite://{tmp_path}/n.db") as lg:  # a new SQLite file is initialised
        assert lg.store.schema_version() == 2
    with pytest.raises(ConfigError):
        open_log(f"sqlite://{tmp_path}/missing/dir.db")
    with pytest.raises(ConfigError, match="unsafe_synchronous"):
        open_log(f"sqlite://{tmp_path}/x.db?synchronous=normal")
    with pytest.raises(ConfigError):
        open_log("mysql://x")


def test_checkpoint_needs_a_key(store_url: str) -> None:
    with open_log(store_url) as lg, pytest.raises(ConfigError, match="signing key"):
        lg.checkpoint()


def test_verify_while_the_log_grows(log: AuditLog) -> None:
    """Appends, integrations and checkpoints during verification raise no false alarm."""
    log.append([ev(i) for i in range(600)])
    log.integrate()
    log.checkpoint()
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 1000
        try:
            while not stop.is_set():
                log.append([ev(j) for j in range(i, i + 50)])
                log.integrate()
                if i % 200 == 0:
                    log.checkpoint()
                i += 50
        except BaseException as e:  # noqa: BLE001 - asserted on below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    reports: list[VerifyReport] = []
    try:
        for _ in range(3):
            # Each verification starts once the writer has added entries since the last
            # (polled with a deadline): the log grows between runs by construction.
            want = (reports[-1].entries if reports else 600) + 1

            def grown(want: int = want) -> bool:
                assert not errors, errors
                return log.store.size() >= want

            wait_until(f"the writer to reach {want} entries", grown, 60, interval=0.01)
            reports.append(verify_store(log.store, chunk=97))
    finally:
        stop.set()
        t.join()
    assert not errors
    for r in reports:
        assert r.ok, r.problems
    assert reports[-1].entries > 600


def test_sqlite_open_waits_for_a_writer_holding_the_file(tmp_path: Path) -> None:
    """A second process opening the store while another is mid-write in rollback mode
    (e.g. switching the file to WAL) gets "database is locked" from SQLite at once,
    without the busy handler; the store waits it out instead of failing to open."""
    path = tmp_path / "audit.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE filler (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO filler VALUES (1)")
    probe = sqlite3.connect(path, isolation_level=None, timeout=5)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        probe.execute("PRAGMA journal_mode=WAL")  # the SQLite behaviour being handled
    probe.close()
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        with open_log(f"sqlite:///{path}") as log:
            assert log.sequenced() == 0
    finally:
        release.join()
        holder.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    check.close()
