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
    """The portal's time: TOTP steps and expiry are chosen, not waited for."""
    return FakeClock()


@pytest.fixture
def env(tmp_path: Path, clock: FakeClock) -> tuple[Portal, MemoryAuditSink, TestClient]:
    """A portal on ``tmp_path`` and a browser at 192.0.2.10 (``helpers.portal_env``)."""
    return portal_env(tmp_path, clock)
