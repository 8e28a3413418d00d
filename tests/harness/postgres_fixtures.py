"""pytest fixtures for the disposable PostgreSQL server (see tests/harness/postgres.py).

``postgres_server`` is one server per test session; ``postgres_db`` a fresh database
per test. A missing PostgreSQL makes the test FAIL with what to install.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .postgres import PgDatabase, PostgresMissing, PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except PostgresMissing as e:
        pytest.fail(str(e), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> PgDatabase:
    return postgres_server.create_database()
