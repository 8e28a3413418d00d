"""The controller's portal admin client (``controller.portal_admin``) against the real
portal served over HTTP: refusals are errors that say what, never the token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.portal_admin import PortalAdmin, PortalAdminError
from tests.integration.controller.portal_server import PortalServer


@pytest.fixture
def portal_server(tmp_path: Path) -> Iterator[PortalServer]:
    server = PortalServer(tmp_path / "portal").start()
    server.portal.invite_user(
        username="r.tanaka", display_name="R", roles=["researcher"], locale="en", actor="t"
    )
    try:
        yield server
    finally:
        server.stop()


def test_a_wrong_admin_token_is_an_error_that_does_not_show_the_token(
    portal_server: PortalServer,
) -> None:
    forged = "not-the-admin-token-" + "y" * 20
    admin = PortalAdmin(url=portal_server.url, token=forged)
    for call in (
        lambda: admin.end_sessions(username="r.tanaka", reason="test"),
        lambda: admin.enclave(name="gut-2026"),
    ):
        with pytest.raises(PortalAdminError) as caught:
            call()
        assert caught.value.status == 401
        assert not caught.value.temporary
        assert forged not in str(caught.value)
        assert forged not in repr(admin)
    assert portal_server.actions().count("admin.auth.failed") == 2


def test_a_member_the_portal_does_not_know_has_no_sessions_to_end(
    portal_server: PortalServer,
) -> None:
    admin = PortalAdmin(url=portal_server.url, token=portal_server.token)
    assert admin.end_sessions(username="nobody.here", reason="enclave x quarantined") == 0
    assert admin.end_sessions(username="r.tanaka", reason="enclave x quarantined") == 0


def test_a_portal_that_lacks_the_sessions_endpoint_is_an_error_not_zero(
    portal_server: PortalServer,
) -> None:
    """A 404 that does not name the user (an older portal without the route) is not
    taken to mean "no sessions"."""
    admin = PortalAdmin(url=portal_server.url + "/elsewhere", token=portal_server.token)
    with pytest.raises(PortalAdminError) as caught:
        admin.end_sessions(username="r.tanaka", reason="test")
    assert caught.value.status == 404


def test_an_unreachable_portal_is_a_temporary_error(portal_server: PortalServer) -> None:
    portal_server.stop()
    admin = PortalAdmin(url=portal_server.url, token=portal_server.token, timeout_s=2.0)
    with pytest.raises(PortalAdminError, match="is unreachable") as caught:
        admin.remove_enclave(name="gut-2026")
    assert caught.value.temporary
