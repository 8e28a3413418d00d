"""Two portal processes sharing one store: a TOTP code accepted by one is refused by
the other; and neither the password nor the TOTP secret is anywhere in the DB files,
the audit log or the server logs (raw bytes searched)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import PortalProcess
from .test_browser import PASSWORD, enrol, password_step, totp_for

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def two_portals(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PortalProcess, PortalProcess]]:
    state = tmp_path_factory.mktemp("shared")
    a = PortalProcess(state=state).start()
    b = PortalProcess(state=state).start()
    yield a, b
    a.stop()
    b.stop()


def test_totp_code_is_single_use_across_processes(
    chromium: Any, two_portals: tuple[PortalProcess, PortalProcess]
) -> None:
    a, b = two_portals
    ctx = chromium.new_context()
    page = ctx.new_page()
    secret = enrol(page, a, "two-proc", webauthn=False)
    code = totp_for(secret, steps_ahead=1)
    password_step(page, a, "two-proc")
    page.fill("#code", code)
    page.click("#totp-submit")
    page.wait_for_selector("#sessions")
    ctx.close()
    ctx = chromium.new_context()
    page = ctx.new_page()
    password_step(page, b, "two-proc")
    page.fill("#code", code)
    page.click("#totp-submit")
    page.wait_for_selector("#error")
    assert "already used" in page.inner_text("#error")
    assert page.locator("#sessions").count() == 0
    ctx.close()
    failed = [
        e
        for e in a.audit_events()
        if e["action"] == "auth.factor.failed" and e["actor"] == "two-proc"
    ]
    assert failed[-1]["details"]["reason"] == "code reused"

    # Raw-byte search: DB (+ WAL), audit log, server logs.
    state: Path = a.state
    files = [p for p in state.iterdir() if p.name.startswith(("id.db", "audit", "portal-"))]
    assert any(p.name == "id.db" for p in files)
    needles = {
        "password": PASSWORD.encode(),
        "password utf-16": PASSWORD.encode("utf-16-le"),
        "totp base32": secret.encode(),
        "totp base32 lower": secret.lower().encode(),
        "totp raw": base64.b32decode(secret),
    }
    for p in files:
        data = p.read_bytes()
        for what, needle in needles.items():
            assert needle not in data, f"{what} found in {p.name}"
