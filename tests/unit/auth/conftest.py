"""Fixtures for the portal's unit tests: a fake clock, a real SQLite store, factors."""

from __future__ import annotations

from pathlib import Path

import pytest

from auth._audit import Auditor, MemoryAuditSink
from auth._crypto import Argon2Params, KeyRing, PasswordHasher
from auth._factors import Factors, WebAuthnSettings
from auth._store import IdentityStore, open_store
from tests.harness.common import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> IdentityStore:
    s = open_store(url=f"sqlite:///{tmp_path / 'identity.db'}")
    yield s
    s.close()


@pytest.fixture
def sink() -> MemoryAuditSink:
    return MemoryAuditSink()


@pytest.fixture
def factors(store: IdentityStore, sink: MemoryAuditSink, clock: FakeClock) -> Factors:
    return Factors(
        store=store,
        keyring=KeyRing.generate(),
        hasher=PasswordHasher(
            params=Argon2Params(time_cost=1, memory_cost_kib=1024, parallelism=1)
        ),
        auditor=Auditor(sink=sink, clock=clock),
        webauthn=WebAuthnSettings(
            rp_id="localhost", rp_name="Enclave", origins=("http://localhost:8000",)
        ),
        clock=clock,
    )
