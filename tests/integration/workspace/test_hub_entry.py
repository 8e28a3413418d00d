"""Entry into an enclave's hub: a real portal, a real JupyterHub, a real audit service.

``gut-std`` (nbdc-standard) has its hub client bound to the enclave at the portal, as
the controller registers it: the portal itself refuses a non-member, and the hub
shows and records that refusal. ``gut-high`` (nbdc-high) has a plain client, so the
portal issues tokens for anyone signed in: the hub's own checks (membership, then
the tier's factors) are what refuse.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.auth.conftest import PortalProcess
from tests.harness.audit_service import ServiceProcess

from .conftest import Hub, browser, enrol, sign_in_through_hub, wait_for_event

MEMBER, OUTSIDER = "hub-member", "hub-outsider"


@pytest.fixture(scope="module")
def secrets(portal: PortalProcess) -> dict[str, str]:
    return {u: enrol(portal, u) for u in (MEMBER, OUTSIDER)}


@pytest.fixture(scope="module")
def browsers() -> Iterator[dict[str, httpx.Client]]:
    """One browser per person for the module: the portal session carries over between
    hubs (TOTP codes are single-use, so each person signs in at the portal once)."""
    clients = {u: browser() for u in (MEMBER, OUTSIDER)}
    yield clients
    for c in clients.values():
        c.close()


@pytest.fixture(scope="module")
def hubs(start_hub: Callable[..., Hub]) -> dict[str, Hub]:
    return {
        "gut-std": start_hub(name="gut-std", tier="nbdc-standard", members=[MEMBER], bound=True),
        "gut-high": start_hub(name="gut-high", tier="nbdc-high", members=[MEMBER], bound=False),
        "gut-lab": start_hub(
            name="gut-lab",
            tier="nbdc-standard",
            members=[MEMBER],
            bound=True,
            spawner_class="tests.integration.workspace.hub_spawners.AuditedTestSpawner",
            workspace_token=True,
        ),
    }


def _refusal(audit_service: ServiceProcess, enclave: str, actor: str, stage: str) -> Any:
    return wait_for_event(
        audit_service.env,
        source="hub",
        match=lambda e: (
            e["action"] == "hub.login.refused"
            and e["enclave"] == enclave
            and e["actor"] == actor
            and e["details"]["stage"] == stage
        ),
    )


def test_member_with_the_tiers_factors_enters_and_it_is_recorded(
    hubs: dict[str, Hub],
    secrets: dict[str, str],
    browsers: dict[str, httpx.Client],
    audit_service: ServiceProcess,
) -> None:
    r = sign_in_through_hub(browsers[MEMBER], hubs["gut-std"].url, MEMBER, secrets[MEMBER])
    assert r.status_code == 200, r.text[:2000]
    assert r.url.path == "/hub/home"
    assert MEMBER in r.text
    ev = wait_for_event(
        audit_service.env,
        source="hub",
        match=lambda e: e["action"] == "hub.login.allowed" and e["enclave"] == "gut-std",
    )
    assert ev["actor"] == MEMBER
    assert ev["outcome"] == "success"
    assert ev["details"]["tier"] == "nbdc-standard"
    assert ev["details"]["acr"] == "urn:enclave:aal2"
    assert set(ev["details"]["categories"]) == {"knowledge", "possession"}


def test_non_member_refused_by_the_portal_sees_a_clear_page_at_the_hub(
    hubs: dict[str, Hub],
    secrets: dict[str, str],
    browsers: dict[str, httpx.Client],
    audit_service: ServiceProcess,
) -> None:
    b = browsers[OUTSIDER]
    r = sign_in_through_hub(b, hubs["gut-std"].url, OUTSIDER, secrets[OUTSIDER])
    assert r.status_code == 403
    assert "You cannot enter the enclave gut-std" in r.text
    assert "not a member" in r.text
    assert b.get(hubs["gut-std"].url + "/hub/api/user").status_code == 403
    ev = _refusal(audit_service, "gut-std", "unknown", "portal")
    assert ev["outcome"] == "denied"
    assert any("not a member" in reason for reason in ev["details"]["reasons"])


def test_non_member_holding_a_valid_portal_token_is_refused_by_the_hub(
    hubs: dict[str, Hub],
    secrets: dict[str, str],
    browsers: dict[str, httpx.Client],
    audit_service: ServiceProcess,
) -> None:
    b = browsers[OUTSIDER]
    r = sign_in_through_hub(b, hubs["gut-high"].url, OUTSIDER, secrets[OUTSIDER])
    assert r.status_code == 403
    assert f"{OUTSIDER} is not a member of the enclave gut-high" in r.text
    assert b.get(hubs["gut-high"].url + "/hub/api/user").status_code == 403
    ev = _refusal(audit_service, "gut-high", OUTSIDER, "membership")
    assert ev["details"]["tier"] == "nbdc-high"


def test_member_whose_session_lacks_the_tiers_factors_is_refused_by_the_hub(
    hubs: dict[str, Hub],
    secrets: dict[str, str],
    browsers: dict[str, httpx.Client],
    audit_service: ServiceProcess,
) -> None:
    # password + TOTP: two categories, but nbdc-high needs a phishing-resistant factor
    b = browsers[MEMBER]
    r = sign_in_through_hub(b, hubs["gut-high"].url, MEMBER, secrets[MEMBER])
    assert r.status_code == 403, r.text[:2000]
    assert "You cannot enter the enclave gut-high" in r.text
    assert "phishing-resistant" in r.text
    assert b.get(hubs["gut-high"].url + "/hub/api/user").status_code == 403
    ev = _refusal(audit_service, "gut-high", MEMBER, "factors")
    assert any("phishing-resistant" in reason for reason in ev["details"]["reasons"])


def _api(b: httpx.Client, hub: str, method: str, path: str) -> httpx.Response:
    """A hub API call as the signed-in browser makes it (the _xsrf cookie echoed)."""
    b.get(hub + "/hub/home")
    xsrf = next(c.value for c in b.cookies.jar if c.name == "_xsrf" and c.path == "/hub/")
    return b.request(method, hub + "/hub/api" + path, headers={"X-XSRFToken": xsrf or ""})


def test_spawn_failure_is_recorded(
    hubs: dict[str, Hub],
    secrets: dict[str, str],
    browsers: dict[str, httpx.Client],
    audit_service: ServiceProcess,
) -> None:
    # gut-std runs the product's LocalProcessSpawner: the member has no OS account here
    b = browsers[MEMBER]
    hub = hubs["gut-std"].url
    assert sign_in_through_hub(b, hub, MEMBER, secrets[MEMBER]).status_code == 200
    r = _api(b, hub, "POST", f"/users/{MEMBER}/server")
    assert r.status_code >= 400
    ev = wait_for_event(
        audit_service.env,
        source="hub",
        match=lambda e: e["action"] == "hub.spawn.failed" and e["enclave"] == "gut-std",
    )
    assert ev["actor"] == MEMBER
    assert ev["outcome"] == "failure"
    assert ev["details"]["reason"]


def test_server_start_and_stop_are_recorded_and_the_spawned_server_is_hardened(
    hubs: dict[str, Hub],
    secrets: dict[str, str],
    browsers: dict[str, httpx.Client],
    audit_service: ServiceProcess,
) -> None:
    b = browsers[MEMBER]
    hub = hubs["gut-lab"].url
    assert sign_in_through_hub(b, hub, MEMBER, secrets[MEMBER]).status_code == 200
    r = _api(b, hub, "POST", f"/users/{MEMBER}/server")
    assert r.status_code in (201, 202), r.text
    deadline = time.monotonic() + 90
    while True:  # the browser opens JupyterLab: the server's own OAuth round trip with the hub
        lab = b.get(f"{hub}/user/{MEMBER}/lab")
        if lab.status_code == 200 and lab.url.path == f"/user/{MEMBER}/lab":
            break
        assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
        time.sleep(0.2)  # poll interval
    status = b.get(f"{hub}/user/{MEMBER}/api/status")
    assert status.status_code == 200
    assert status.headers["cache-control"] == "no-store"
    # through the hub's proxy, as a browser would ask: refused by the workspace itself
    refused = b.get(f"{hub}/user/{MEMBER}/files/anything.csv?download=1")
    assert refused.status_code == 403
    started = wait_for_event(
        audit_service.env,
        source="hub",
        match=lambda e: e["action"] == "hub.server.started" and e["enclave"] == "gut-lab",
    )
    assert started["actor"] == MEMBER
    ws = wait_for_event(
        audit_service.env,
        source="workspace",
        match=lambda e: e["action"] == "workspace.download.refused" and e["enclave"] == "gut-lab",
    )
    assert ws["actor"] == MEMBER
    assert _api(b, hub, "DELETE", f"/users/{MEMBER}/server").status_code in (202, 204)
    wait_for_event(
        audit_service.env,
        source="hub",
        match=lambda e: e["action"] == "hub.server.stopped" and e["enclave"] == "gut-lab",
    )
