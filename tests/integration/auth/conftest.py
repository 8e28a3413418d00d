"""The identity-store tests' PostgreSQL: the shared disposable server of
``tests/harness/postgres.py`` (one per test session, stopped in its finaliser;
a missing PostgreSQL FAILS with a message)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from auth import MemoryAuditSink, Portal
from tests.harness.postgres import PostgresServer

from .helpers import FakeClock, portal_env


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The superuser's URL of the server's ``postgres`` database; tests create their own."""
    return postgres_server.url()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def env(tmp_path: Path, clock: FakeClock) -> tuple[Portal, MemoryAuditSink, TestClient]:
    """A portal on ``tmp_path`` with an in-memory audit sink, and a browser at
    192.0.2.10 (a module may define its own ``env`` instead)."""
    return portal_env(tmp_path, clock)
