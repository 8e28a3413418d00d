"""The service verifies the whole log on its own schedule and exports the result, so
operators can alert on a tampered log without anyone running a command (#14 item 5)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from audit.log import AuditLog, open_log
from audit.server import create_app
from audit.service import ServiceSettings
from audit.tokens import TokenStore
from tests.assets.audit import make_corpus
from tests.harness.audit_service import AuditEnv
from tests.harness.common import wait_until

from .conftest import scrape


def _service_over(
    rows_of: str, env: AuditEnv, tmp_path: Path
) -> Iterator[tuple[TestClient, AuditLog]]:
    """The service over a store holding the corpus rows ``rows_of`` (an attack or
    ``intact``), signing with the corpus key, verifying every 0.2 s."""
    db = tmp_path / f"{rows_of}.db"
    make_corpus.load_rows(make_corpus.attacked_rows(rows_of), sqlite_path=db)
    # a private copy: the checkout's mode is git's (0644 under umask 022), and the log
    # refuses a key others can read
    key = tmp_path / "corpus-signing.key"
    key.write_bytes(make_corpus.KEY_FILE.read_bytes())
    key.chmod(0o600)
    log = open_log(f"sqlite:///{db}", signer_key_path=key)
    app = create_app(
        log=log,
        tokens=TokenStore(path=env.tokens_path),
        officer_token_file=env.officer_file,
        settings=ServiceSettings(checkpoint_interval_seconds=0, verify_interval_seconds=0.2),
    )
    try:
        with TestClient(app, base_url="https://testserver") as client:
            yield client, log
    finally:
        log.close()


def _first_result(client: TestClient) -> dict[str, float]:
    """The scheduled-verification series once the first result is in (polled)."""

    def series() -> dict[str, float]:
        found = {
            m.group(1): float(m.group(2))
            for m in re.finditer(
                r'^enclave_audit_(scheduled_verifications_total\{result="\w+"\}|'
                r"last_scheduled_verification_ok) (\S+)$",
                scrape(client),
                re.M,
            )
        }
        done = sum(v for k, v in found.items() if k.startswith("scheduled"))
        return found if done >= 1 else {}

    return wait_until("the first scheduled verification", series, 120, interval=0.1)


@pytest.fixture
def intact(env: AuditEnv, tmp_path: Path) -> Iterator[tuple[TestClient, AuditLog]]:
    yield from _service_over("intact", env, tmp_path)


@pytest.fixture
def tampered(env: AuditEnv, tmp_path: Path) -> Iterator[tuple[TestClient, AuditLog]]:
    yield from _service_over("edited_entry_rehashed", env, tmp_path)


def test_an_intact_log_is_verified_on_schedule_and_recorded(
    intact: tuple[TestClient, AuditLog],
) -> None:
    client, log = intact
    series = _first_result(client)
    assert series['scheduled_verifications_total{result="ok"}'] >= 1
    assert series['scheduled_verifications_total{result="failed"}'] == 0
    assert series["last_scheduled_verification_ok"] == 1
    rows = log.store.entries(0, log.sequenced())
    events = [orjson.loads(r[-1]) for r in rows]
    actions = [(e["action"], e["actor"]) for e in events if e["action"].startswith("audit.verif")]
    assert ("audit.verify.started", "service:schedule") in actions
    assert ("audit.verified", "service:schedule") in actions


def test_an_edited_entry_is_caught_without_anyone_running_verify(
    tampered: tuple[TestClient, AuditLog],
) -> None:
    client, _ = tampered
    series = _first_result(client)
    assert series['scheduled_verifications_total{result="failed"}'] >= 1
    assert series["last_scheduled_verification_ok"] == 0
