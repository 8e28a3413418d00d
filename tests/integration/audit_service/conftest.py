"""Fixtures: a real SQLite-backed audit service app (in-process ASGI) per test."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from audit.log import AuditLog, open_log
from audit.server import create_app
from audit.service import ServiceSettings, metrics_app
from audit.tokens import TokenStore
from tests.harness.audit_service import AuditEnv, make_audit_env


@pytest.fixture
def env(tmp_path: Path) -> AuditEnv:
    return make_audit_env(tmp_path / "audit")


@pytest.fixture
def log(env: AuditEnv) -> Iterator[AuditLog]:
    lg = open_log(env.store_url, signer_key_path=env.key_path)
    try:
        yield lg
    finally:
        lg.close()


def make_app(env: AuditEnv, log: AuditLog, **settings: Any) -> FastAPI:
    return create_app(
        log=log,
        tokens=TokenStore(path=env.tokens_path),
        officer_token_file=env.officer_file,
        settings=ServiceSettings(**settings),
    )


def make_client(env: AuditEnv, log: AuditLog, **settings: Any) -> TestClient:
    # https: the session cookie is Secure and __Host- prefixed
    return TestClient(make_app(env, log, **settings), base_url="https://testserver")


def client_from(app: FastAPI, address: str) -> TestClient:
    """A client of ``app`` whose requests come from the IP ``address``."""
    return TestClient(app, base_url="https://testserver", client=(address, 50000))


@pytest.fixture
def client(env: AuditEnv, log: AuditLog) -> Iterator[TestClient]:
    with make_client(env, log, checkpoint_interval_seconds=0) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def officer_csrf(client: TestClient, token: str) -> str:
    """Sign ``client`` in to the officer UI with ``token``; the session's CSRF token."""
    form = client.get("/ui/login").text
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', form)
    assert login_csrf is not None
    client.post("/ui/login", data={"token": token, "login_csrf": login_csrf.group(1)})
    page = client.get("/ui/verify").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    return csrf.group(1)


def ui_verify(client: TestClient, csrf: str) -> dict[str, Any]:
    """'Verify the whole log now': start the job, poll it until it has finished."""
    start = client.post("/ui/verify", headers={"X-CSRF-Token": csrf})
    assert start.status_code == 200, start.text
    job = start.json()["job"]
    deadline = time.monotonic() + 120
    while True:
        status: dict[str, Any] = client.get(f"/ui/verify/{job}.json").json()
        if status["finished"]:
            return status
        assert time.monotonic() < deadline, f"verification {job} unfinished after 120 s"
        time.sleep(0.02)  # poll interval; the deadline bounds the wait


def scrape(client: TestClient) -> str:
    """The text of ``/metrics`` from the metrics listener of ``client``'s app."""
    with TestClient(metrics_app(client.app.state.audit.metrics)) as m:  # type: ignore[attr-defined]
        r = m.get("/metrics")
        assert r.status_code == 200
        return r.text
