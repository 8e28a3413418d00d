"""The identity-store tests' PostgreSQL: the shared disposable server of
``tests/harness/postgres.py`` (one per test session, stopped in its finaliser;
a missing PostgreSQL FAILS with a message)."""

from __future__ import annotations

import pytest

from tests.harness.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The superuser's URL of the server's ``postgres`` database; tests create their own."""
    return postgres_server.url()
