"""Fixtures for the audit store tests: every store test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit import _verify_scan as scan_module
from audit._note import Signer, write_key_file
from audit._store_postgres import PostgresStore
from audit.log import AuditLog, open_log
from tests.harness.postgres import PgDatabase

CORPUS = Path(__file__).resolve().parents[2] / "assets" / "audit"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["compiled", "python"])
def verify_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with verify's compiled fast path, and again without it (as on a host
    where ``audit._speedups`` could not be built): the Python checks must catch the
    same things on their own."""
    if request.param == "python":
        monkeypatch.setattr(scan_module, "_speedups", None)
    return str(request.param)


@pytest.fixture
def pg_migrated(postgres_db: PgDatabase) -> PgDatabase:
    """A fresh PostgreSQL database migrated by its owner, with the writer role granted."""
    store = PostgresStore(postgres_db.admin_url)
    try:
        store.migrate(writer=postgres_db.writer_role)
    finally:
        store.close()
    return postgres_db


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The application's URL of an empty, migrated store (PostgreSQL: the writer role)."""
    if backend == "sqlite":
        return f"sqlite://{tmp_path}/audit.db"
    db: PgDatabase = request.getfixturevalue("pg_migrated")
    return db.writer_url


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "signing.key"
    write_key_file(path, Signer("test.enclave/audit", bytes(range(1, 33))))
    return path


@pytest.fixture
def log(store_url: str, key_file: Path) -> Iterator[AuditLog]:
    """An open log over the empty store of ``store_url``, signing with ``key_file``."""
    lg = open_log(store_url, signer_key_path=key_file)
    yield lg
    lg.close()


@pytest.fixture
def corpus_key(tmp_path: Path) -> Path:
    """The corpus's test-only signing key, copied with mode 0600 (git does not keep modes)."""
    dst = tmp_path / "corpus-signing.key"
    shutil.copyfile(CORPUS / "corpus-signing.key", dst)
    dst.chmod(0o600)
    return dst
