"""The portal registration and session revocation of the Kubernetes backend.

Against the real control plane (the reconciler runs as a ServiceAccount bound to
exactly ``controller/kube/rbac.yaml``), the real audit service and the real portal
served over HTTP (``portal_server.PortalServer``; stopped to make an outage). What
the portal holds is read back through its admin API; a session is a real one, made
by signing in with password and TOTP and redeeming a code with the hub's client.
"""

from __future__ import annotations

import base64
import dataclasses
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from controller.kube import GROUP, VERSION
from controller.kube._lifecycle import AuditRecorder, set_quarantine
from controller.kube.operator import OperatorConfig, reconcile_latest
from controller.portal_admin import PortalAdmin
from tests.harness.audit_service import AuditEnv
from tests.harness.kube_fixtures import ServiceAccountClient
from tests.integration.auth.helpers import Pkce
from tests.integration.auth.test_web_flows import enrol_alice, login
from tests.integration.controller.helpers import (
    SETTINGS,
    condition,
    create_enclave,
    delete_enclave,
    get_enclave,
    operator_config,
    phase,
    recorded,
    running_operator,
    wait_for,
)
from tests.integration.controller.portal_server import PortalServer

pytestmark = pytest.mark.kube

#: Seconds before a wait fails.
WAIT_S = 150.0


def _wait(what: str, condition_: Callable[[], bool]) -> None:
    """``wait_for`` with a deadline for a shared, loaded machine (it returns as soon as
    ``condition_`` holds; the deadline only bounds a failure)."""
    wait_for(what, condition_, timeout=WAIT_S)


@pytest.fixture
def portal_server(tmp_path: Path) -> Iterator[PortalServer]:
    server = PortalServer(tmp_path / "portal").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(portal_server: PortalServer) -> PortalAdmin:
    """The controller's client of ``portal_server``'s admin API (tests read back with it)."""
    return PortalAdmin(url=portal_server.url, token=portal_server.token)


@pytest.fixture
def config(
    controller_identity: ServiceAccountClient,
    enclave_crd_installed: str,
    audit_recorder: AuditRecorder,
    admin: PortalAdmin,
) -> OperatorConfig:
    """The reconciler as its ServiceAccount, with the audit service and the portal."""
    return operator_config(controller_identity, audit=audit_recorder, portal=admin)


def _create(kube_api: Any, suffix: str, members: list[str]) -> str:
    # The researcher's "terminal" in these tests is the loopback address.
    return create_enclave(
        kube_api,
        tier="nbdc-standard",
        suffix=suffix,
        members=members,
        access_networks=["127.0.0.0/8"],
    )


def _identity(kube_api: Any, name: str) -> tuple[str, str, str]:
    c = condition(get_enclave(kube_api, name), "Identity")
    return (str(c.get("status")), str(c.get("reason")), str(c.get("message")))


def _registered(kube_api: Any, name: str) -> bool:
    return _identity(kube_api, name)[:2] == ("True", "Registered")


def _client_secret(kube_api: Any, name: str) -> str:
    data = client.CoreV1Api(kube_api).read_namespaced_secret("hub-secret", f"enclave-{name}").data
    return base64.b64decode(data["OAUTH_CLIENT_SECRET"]).decode()


def test_a_member_removed_from_the_spec_loses_the_portals_membership(
    kube_api: Any, config: OperatorConfig, admin: PortalAdmin, portal_server: PortalServer
) -> None:
    with running_operator(config):
        name = _create(kube_api, "reg", ["alice", "bob"])
        try:
            _wait("the enclave to be registered", lambda: _registered(kube_api, name))
            host = f"{name}.{SETTINGS.base_domain}"
            live = admin.enclave(name=name, client_id=f"hub-{name}")
            assert live is not None
            assert live["tier"] == "nbdc-standard"
            assert live["networks"] == ["127.0.0.0/8"]
            assert sorted(m["user"] for m in live["members"]) == ["alice", "bob"]
            assert live["hub_url"] == f"https://{host}/"
            assert live["redirect_uris"] == [f"https://{host}/hub/oauth_callback"]
            # The client secret is in the enclave's Secret, and nowhere in its status.
            secret = _client_secret(kube_api, name)
            assert len(secret) >= 32
            assert secret not in repr(get_enclave(kube_api, name))
            assert portal_server.actions().count("admin.enclave.registered") == 1

            # Settled: another reconciliation reads the portal and writes nothing there.
            reconcile_latest(config, name)
            assert portal_server.actions().count("admin.enclave.registered") == 1

            spec = {"spec": {"members": [{"user": "alice", "role": "researcher"}]}}
            client.CustomObjectsApi(kube_api).patch_cluster_custom_object(
                GROUP, VERSION, "enclaves", name, spec
            )

            def members() -> list[str]:
                found = admin.enclave(name=name)
                return sorted(m["user"] for m in (found or {}).get("members", []))

            _wait("the portal's membership to follow the spec", lambda: members() == ["alice"])
            (registered,) = [
                e
                for e in portal_server.sink.events
                if e["action"] == "admin.enclave.registered"
                and e["details"]["members_removed"] == ["bob"]
            ]
            assert registered["details"]["client_secret_issued"] is False
            assert _client_secret(kube_api, name) == secret  # the client kept its secret

            # The end of use removes the registration before the resource goes.
            delete_enclave(kube_api, name)
            _wait("the Enclave to be gone", lambda: get_enclave(kube_api, name) is None)
            assert admin.enclave(name=name) is None
            assert "admin.enclave.removed" in portal_server.actions()
        finally:
            delete_enclave(kube_api, name)


def _hub_session(browser: httpx.Client, name: str, client_secret: str) -> str:
    """The hub's side of a sign-in: authorize with its client, redeem the code; the
    access token."""
    redirect = f"https://{name}.{SETTINGS.base_domain}/hub/oauth_callback"
    pkce = Pkce.new()
    q = {
        "client_id": f"hub-{name}",
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": "openid profile",
        "state": "s",
        "nonce": "n",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    r = browser.get("/oidc/authorize?" + urllib.parse.urlencode(q), follow_redirects=False)
    assert r.status_code == 303, r.text
    location = urllib.parse.urlparse(r.headers["location"])
    code = urllib.parse.parse_qs(location.query)["code"][0]
    tok = browser.post(
        "/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "code_verifier": pkce.verifier,
        },
        auth=(f"hub-{name}", client_secret),
    )
    assert tok.status_code == 200, tok.text
    return str(tok.json()["access_token"])


def _assert_signed_out(
    kube_api: Any,
    name: str,
    browser: httpx.Client,
    portal_server: PortalServer,
    audit_env: AuditEnv,
    closed: str,
) -> None:
    """The enclave became ``closed`` (quarantined or suspended), its one member's one
    session was ended at the portal, and both the portal and the controller say so."""
    _wait(f"the phase {closed.title()}", lambda: phase(kube_api, name) == closed.title())
    _wait(
        "the members' sessions to be revoked",
        lambda: condition(get_enclave(kube_api, name), "Sessions").get("reason") == "Revoked",
    )
    sessions = condition(get_enclave(kube_api, name), "Sessions")
    assert sessions["message"] == "1 portal session(s) of the members revoked"
    assert browser.get("/", follow_redirects=False).status_code != 200
    ended = [e for e in portal_server.sink.events if e["action"] == "session.ended"]
    assert [e["details"]["reason"] for e in ended] == [f"enclave {name} {closed}"]
    _wait(
        f"enclave.{closed} with the revocation in the audit log",
        lambda: (
            recorded(audit_env, f"enclave.{closed}") and recorded(audit_env, '"sessions_revoked":1')
        ),
    )


def test_a_quarantined_enclaves_members_are_signed_out_of_the_portal(
    kube_api: Any, config: OperatorConfig, audit_env: AuditEnv, portal_server: PortalServer
) -> None:
    browser = portal_server.browser()
    secret_b32 = enrol_alice(browser, portal_server.clock)  # type: ignore[arg-type]
    login(browser, secret_b32, portal_server.clock)  # type: ignore[arg-type]
    with running_operator(config):
        name = _create(kube_api, "qua", ["alice"])
        try:
            _wait("the enclave to be registered", lambda: _registered(kube_api, name))
            access = _hub_session(browser, name, _client_secret(kube_api, name))
            bearer = {"Authorization": f"Bearer {access}"}
            assert browser.get("/oidc/userinfo", headers=bearer).status_code == 200
            assert browser.get("/", follow_redirects=False).status_code == 200

            set_quarantine(api_client=kube_api, name=name, reason="incident 7", active=True)
            _assert_signed_out(kube_api, name, browser, portal_server, audit_env, "quarantined")
            assert browser.get("/oidc/userinfo", headers=bearer).status_code == 401
            # Once per transition: a further reconciliation ends nothing more.
            reconcile_latest(config, name)
            assert portal_server.actions().count("session.ended") == 1
        finally:
            delete_enclave(kube_api, name)
            browser.close()


def test_an_expired_enclaves_members_are_signed_out_of_the_portal(
    kube_api: Any, config: OperatorConfig, audit_env: AuditEnv, portal_server: PortalServer
) -> None:
    browser = portal_server.browser()
    login(browser, enrol_alice(browser, portal_server.clock), portal_server.clock)  # type: ignore[arg-type]
    later = timedelta()  # the controller's clock runs this far ahead (moved past notAfter)

    def clock() -> datetime:
        return datetime.now(UTC) + later

    with running_operator(dataclasses.replace(config, clock=clock)):
        name = _create(kube_api, "exp", ["alice"])
        try:
            _wait("the enclave to be registered", lambda: _registered(kube_api, name))
            assert browser.get("/", follow_redirects=False).status_code == 200
            later = timedelta(days=366)  # past notAfter (a year), within the grace period
            _assert_signed_out(kube_api, name, browser, portal_server, audit_env, "suspended")
        finally:
            later = timedelta()
            delete_enclave(kube_api, name)
            browser.close()


def test_a_portal_outage_is_reported_and_healed_not_hidden(
    kube_api: Any, config: OperatorConfig, admin: PortalAdmin, portal_server: PortalServer
) -> None:
    portal_server.stop()
    with running_operator(config):
        name = _create(kube_api, "out", ["alice"])
        try:
            _wait(
                "Identity to say the portal is unavailable",
                lambda: _identity(kube_api, name)[:2] == ("False", "PortalUnavailable"),
            )
            message = _identity(kube_api, name)[2]
            assert portal_server.url in message
            assert "retrying" in message
            assert portal_server.token not in repr(get_enclave(kube_api, name))
            assert phase(kube_api, name) == "Provisioning"
            portal_server.start()
            _wait("the registration once the portal is back", lambda: _registered(kube_api, name))
            assert admin.enclave(name=name) is not None
        finally:
            delete_enclave(kube_api, name)


def test_the_controller_cannot_read_any_secret_but_the_hubs(
    kube_api: Any,
    kube_namespace: str,
    enclave_crd_installed: str,
    controller_identity: ServiceAccountClient,
) -> None:
    """Its RBAC names ``hub-secret``: a compromised controller reads no other Secret."""
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        kube_namespace, {"metadata": {"name": "db-password"}, "stringData": {"p": "s3cret"}}
    )
    as_controller = client.CoreV1Api(controller_identity.api_client)
    for read in (
        lambda: as_controller.read_namespaced_secret("db-password", kube_namespace),
        lambda: as_controller.list_namespaced_secret(kube_namespace),
    ):
        with pytest.raises(client.ApiException) as refused:
            read()
        assert refused.value.status == 403
    with pytest.raises(client.ApiException) as missing:
        as_controller.read_namespaced_secret("hub-secret", kube_namespace)
    assert missing.value.status == 404  # allowed, and there is none here
