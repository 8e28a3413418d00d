"""Issue #12, item 9: event ids are unique per source and enclave, on both stores.

A component with predictable ids could have its genuine events suppressed by anyone
who wrote the same id first; the conflict error also named the other entry's index.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from audit import AuditLog, EventError, open_log, verify_store
from audit._store import migrations
from audit._store_postgres import PostgresStore
from audit._store_sqlite import SqliteStore, _split_sql
from tests.harness.audit_service import sample_event
from tests.harness.postgres import PgDatabase


def test_an_id_taken_by_another_source_does_not_suppress_the_genuine_event(log: AuditLog) -> None:
    squat = sample_event(source="workspace", id="portal-0001")
    genuine = sample_event(source="portal", id="portal-0001")
    other_enclave = sample_event(source="portal", id="portal-0001", enclave="metabolome-2027")
    assert log.append([squat]) == [0]
    assert log.append([genuine]) == [1]
    assert log.append([other_enclave]) == [2]
    assert log.append([genuine]) == [1]  # an idempotent retry still finds its own entry
    with pytest.raises(EventError) as err:
        log.append([sample_event(source="portal", id="portal-0001", actor="someone-else")])
    assert "index" not in str(err.value)
    assert log.sequenced() == 3
    log.integrate()
    assert verify_store(log.store).ok


def test_a_null_enclave_still_makes_an_id_unique(log: AuditLog) -> None:
    first = sample_event(source="portal", id="p-1", enclave=None)
    assert log.append([first]) == [0]
    assert log.append([first]) == [0]
    with pytest.raises(EventError):
        log.append([sample_event(source="portal", id="p-1", enclave=None, actor="other")])


def test_an_existing_sqlite_store_is_migrated_and_keeps_verifying(
    tmp_path: Path, key_file: Path
) -> None:
    db = tmp_path / "audit.db"
    conn = sqlite3.connect(db, isolation_level=None)  # a store made before migration 0002
    conn.execute(
        "CREATE TABLE audit_schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)"
    )
    version, name, sql = migrations("sqlite")[0]
    for stmt in _split_sql(sql):
        conn.execute(stmt)
    conn.execute("INSERT INTO audit_schema_migrations VALUES (?, ?, 'then')", (version, name))
    conn.close()
    old = AuditLog(SqliteStore(f"sqlite:///{db}", create=False))
    try:
        old.append([sample_event(id=f"e-{i}") for i in range(300)])
        old.integrate()
    finally:
        old.close()
    store = SqliteStore(f"sqlite:///{db}", create=False)
    try:
        assert store.migrate() == ["0002_scoped_event_ids"]
    finally:
        store.close()
    with open_log(f"sqlite:///{db}", signer_key_path=key_file) as log:
        assert log.sequenced() == 300
        assert log.append([sample_event(source="workspace", id="e-7")]) == [300]
        log.integrate()
        report = verify_store(log.store)
        assert report.ok, report
    conn = sqlite3.connect(db, isolation_level=None)
    for change in ("UPDATE audit_entries SET actor = 'x'", "DELETE FROM audit_entries"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(change)
    conn.close()


def test_an_existing_postgres_store_is_migrated_and_keeps_verifying(
    postgres_db: PgDatabase, key_file: Path
) -> None:
    version, name, sql = migrations("postgres")[0]
    with psycopg.connect(postgres_db.admin_url, autocommit=True) as conn:  # made before 0002
        conn.execute(
            "CREATE TABLE audit_schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)"
        )
        conn.execute(sql.encode())
        conn.execute("INSERT INTO audit_schema_migrations VALUES (%s, %s, 'then')", (version, name))
    owner = PostgresStore(postgres_db.admin_url)
    try:
        old = AuditLog(owner)
        old.append([sample_event(id=f"e-{i}") for i in range(300)])
        old.integrate()
        assert owner.migrate(writer=postgres_db.writer_role) == ["0002_scoped_event_ids"]
    finally:
        owner.close()
    with open_log(postgres_db.writer_url, signer_key_path=key_file) as log:
        assert log.sequenced() == 300
        assert log.append([sample_event(source="workspace", id="e-7")]) == [300]
        log.integrate()
        report = verify_store(log.store)
        assert report.ok, report
