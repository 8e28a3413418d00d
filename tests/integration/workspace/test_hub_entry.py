"""Entry into an enclave's hub: a real portal, a real JupyterHub, a real audit service.

``gut-std`` (nbdc-standard) has its hub client bound to the enclave at the portal, as
the controller registers it: the portal itself refuses a non-member, and the hub
shows and records that refusal. ``gut-high`` (nbdc-high) has a plain client, so the
portal issues tokens for anyone signed in: the hub's own checks (membership, then
the tier's factors) are what refuse.
"""

from __future__ import annotations

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
