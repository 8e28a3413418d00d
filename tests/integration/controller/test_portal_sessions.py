"""Session revocation against the real portal application served over HTTP (uvicorn)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from auth import create_app
from controller.kube._lifecycle import PortalSessions, PortalUnavailableError
from tests.harness.audit_service import free_port
from tests.integration.auth.helpers import ADMIN_TOKEN, make_portal


@pytest.fixture
def portal_url(tmp_path: Path) -> Iterator[str]:
    """The portal app with one invited member, served on a free loopback port."""
    portal, _ = make_portal(tmp_path)
    portal.invite_user(
        username="r.tanaka", display_name="R", roles=["researcher"], locale="en", actor="t"
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(portal=portal), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the portal did not start within 30 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_portal_that_gives_no_user_ids_is_reported_not_guessed(portal_url: str) -> None:
    sessions = PortalSessions(url=portal_url, token=ADMIN_TOKEN)
    with pytest.raises(PortalUnavailableError, match="cannot be matched to the members"):
        sessions.revoke(users=["r.tanaka"])


def test_a_wrong_admin_token_is_an_error_that_does_not_show_the_token(portal_url: str) -> None:
    sessions = PortalSessions(url=portal_url, token="not-the-admin-token")
    with pytest.raises(PortalUnavailableError) as caught:
        sessions.revoke(users=["r.tanaka"])
    assert "not-the-admin-token" not in str(caught.value)
