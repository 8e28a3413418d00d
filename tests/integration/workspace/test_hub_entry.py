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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.local import _proctree
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
        # as the local backend runs a hub: proxy and idle culler in the hub's process
        "gut-idle": start_hub(
            name="gut-idle",
            tier="nbdc-standard",
            members=[MEMBER],
            bound=True,
            spawner_class="tests.integration.workspace.hub_spawners.AuditedTestSpawner",
            workspace_token=True,
            in_process=True,
            idle_timeout_s=10,
        ),
    }


@dataclass(frozen=True)
class World:
    """The module's hubs, people (their browsers and TOTP secrets) and audit service."""

    hubs: dict[str, Hub]
    secrets: dict[str, str]
    browsers: dict[str, httpx.Client]
    audit: ServiceProcess

    def enter(self, person: str, enclave: str) -> httpx.Response:
        """``person`` opens ``enclave``'s hub and signs in through the portal."""
        url = self.hubs[enclave].url
        return sign_in_through_hub(self.browsers[person], url, person, self.secrets[person])

    def refused(self, person: str, enclave: str) -> str:
        """``person`` is refused at ``enclave``'s hub and holds no hub session; the page."""
        r = self.enter(person, enclave)
        assert r.status_code == 403, r.text[:2000]
        assert f"You cannot enter the enclave {enclave}" in r.text
        api = self.browsers[person].get(self.hubs[enclave].url + "/hub/api/user")
        assert api.status_code == 403
        return r.text

    def event(self, action: str, enclave: str, source: str = "hub", **fields: Any) -> Any:
        """The first ``source`` event of ``action`` in ``enclave`` whose fields match."""
        return wait_for_event(
            self.audit.env,
            source=source,
            match=lambda e: (
                e["action"] == action
                and e["enclave"] == enclave
                and all(e.get(k, e["details"].get(k)) == v for k, v in fields.items())
            ),
        )

    def api(self, person: str, enclave: str, method: str, path: str) -> httpx.Response:
        """A hub API call as the signed-in browser makes it (the _xsrf cookie echoed)."""
        b, hub = self.browsers[person], self.hubs[enclave].url
        b.get(hub + "/hub/home")
        xsrf = next(c.value for c in b.cookies.jar if c.name == "_xsrf" and c.path == "/hub/")
        return b.request(method, hub + "/hub/api" + path, headers={"X-XSRFToken": xsrf or ""})


@pytest.fixture(scope="module")
def world(
    hubs: dict[str, Hub],
    secrets: dict[str, str],
    browsers: dict[str, httpx.Client],
    audit_service: ServiceProcess,
) -> World:
    return World(hubs=hubs, secrets=secrets, browsers=browsers, audit=audit_service)


def test_member_with_the_tiers_factors_enters_and_it_is_recorded(world: World) -> None:
    r = world.enter(MEMBER, "gut-std")
    assert r.status_code == 200, r.text[:2000]
    assert r.url.path == "/hub/home"
    assert MEMBER in r.text
    ev = world.event("hub.login.allowed", "gut-std")
    assert ev["actor"] == MEMBER
    assert ev["outcome"] == "success"
    assert ev["details"]["tier"] == "nbdc-standard"
    assert ev["details"]["acr"] == "urn:enclave:aal2"
    assert set(ev["details"]["categories"]) == {"knowledge", "possession"}


def test_non_member_refused_by_the_portal_sees_a_clear_page_at_the_hub(world: World) -> None:
    assert "not a member" in world.refused(OUTSIDER, "gut-std")
    ev = world.event("hub.login.refused", "gut-std", actor="unknown", stage="portal")
    assert ev["outcome"] == "denied"
    assert any("not a member" in reason for reason in ev["details"]["reasons"])


def test_non_member_holding_a_valid_portal_token_is_refused_by_the_hub(world: World) -> None:
    page = world.refused(OUTSIDER, "gut-high")
    assert f"{OUTSIDER} is not a member of the enclave gut-high" in page
    ev = world.event("hub.login.refused", "gut-high", actor=OUTSIDER, stage="membership")
    assert ev["details"]["tier"] == "nbdc-high"


def test_member_whose_session_lacks_the_tiers_factors_is_refused_by_the_hub(
    world: World,
) -> None:
    # password + TOTP: two categories, but nbdc-high needs a phishing-resistant factor
    assert "phishing-resistant" in world.refused(MEMBER, "gut-high")
    ev = world.event("hub.login.refused", "gut-high", actor=MEMBER, stage="factors")
    assert any("phishing-resistant" in reason for reason in ev["details"]["reasons"])


def test_spawn_failure_is_recorded(world: World) -> None:
    # gut-std runs the product's LocalProcessSpawner: the member has no OS account here
    assert world.enter(MEMBER, "gut-std").status_code == 200
    assert world.api(MEMBER, "gut-std", "POST", f"/users/{MEMBER}/server").status_code >= 400
    ev = world.event("hub.spawn.failed", "gut-std", actor=MEMBER)
    assert ev["outcome"] == "failure"
    assert ev["details"]["reason"]


def test_server_start_and_stop_are_recorded_and_the_spawned_server_is_hardened(
    world: World,
) -> None:
    b, hub = world.browsers[MEMBER], world.hubs["gut-lab"].url
    assert world.enter(MEMBER, "gut-lab").status_code == 200
    r = world.api(MEMBER, "gut-lab", "POST", f"/users/{MEMBER}/server")
    assert r.status_code in (201, 202), r.text
    _open_lab(b, hub)
    status = b.get(f"{hub}/user/{MEMBER}/api/status")
    assert status.status_code == 200
    assert status.headers["cache-control"] == "no-store"
    # through the hub's proxy, as a browser would ask: refused by the workspace itself
    assert b.get(f"{hub}/user/{MEMBER}/files/anything.csv?download=1").status_code == 403
    world.event("hub.server.started", "gut-lab", actor=MEMBER)
    world.event("workspace.download.refused", "gut-lab", source="workspace", actor=MEMBER)
    assert world.api(MEMBER, "gut-lab", "DELETE", f"/users/{MEMBER}/server").status_code in (
        202,
        204,
    )
    world.event("hub.server.stopped", "gut-lab", actor=MEMBER)


def test_an_idle_server_is_stopped_by_the_culler_inside_the_hub_and_it_is_recorded(
    world: World,
) -> None:
    hub = world.hubs["gut-idle"]
    b = world.browsers[MEMBER]
    assert world.enter(MEMBER, "gut-idle").status_code == 200
    r = world.api(MEMBER, "gut-idle", "POST", f"/users/{MEMBER}/server")
    assert r.status_code in (201, 202), r.text
    _open_lab(b, hub.url)  # through the hub's in-process proxy
    world.event("hub.server.started", "gut-idle", actor=MEMBER)
    # nothing touches the server now: the culler (every 10 s, idle after 10 s) stops it
    stopped = wait_for_event(
        world.audit.env,
        source="hub",
        match=lambda e: e["action"] == "hub.server.stopped" and e["enclave"] == "gut-idle",
        timeout=120,
    )
    assert stopped["actor"] == MEMBER
    assert not world.api(MEMBER, "gut-idle", "GET", f"/users/{MEMBER}").json()["servers"]
    # the hub is one process: no configurable-http-proxy, no culler process beside it
    helpers = [_cmdline(pid) for pid in _proctree.tree(hub.proc.pid) if pid != hub.proc.pid]
    assert not [c for c in helpers if b"configurable-http-proxy" in c or b"idle_culler" in c]


def _open_lab(b: httpx.Client, hub: str) -> None:
    """Poll until the member's JupyterLab loads (the server's own OAuth round trip)."""
    deadline = time.monotonic() + 90
    while True:
        lab = b.get(f"{hub}/user/{MEMBER}/lab")
        if lab.status_code == 200 and lab.url.path == f"/user/{MEMBER}/lab":
            return
        assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
        time.sleep(0.2)  # poll interval


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""  # exited meanwhile
