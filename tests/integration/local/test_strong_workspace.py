"""Issue #15's ``demo-tommo-strong`` acceptance, end to end through the local backend.

``enclave controller run --local`` (its default spawner: the audited sandbox) serves
one tommo-strong enclave, with an operator overlay (``--overlay``) that shrinks the
tier's screen-output budget so that a few hundred kilobytes cross it. The member
signs in through the enclave's hub at the real portal with the tier's factors:
password, TOTP and a biometric WebAuthn key (the software authenticator, its packed
attestation issued by a test vendor CA that the portal is started to trust, as in
tests/integration/auth/test_biometric_config.py), approved by an officer, presented
at the portal's step-up. Then, in a real sandboxed single-user server: terminals are
refused, each executed cell is recorded, and printing past the budget stops the
session with a message to the researcher and an event for the officer. The last test
stops the server, so it runs last; records are polled with deadlines.
"""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.auth.conftest import PortalProcess
from tests.harness.audit_service import ServiceProcess
from tests.harness.enclave_files import MEMBER, enclave_doc
from tests.harness.local_hub import shared_state_dir
from tests.harness.softkey import SoftKey, attestation_ca
from tests.integration.auth.test_biometric_config import BIO_AAGUID, BIO_AAGUID_STR
from tests.integration.auth.test_webauthn_http import step_up
from tests.integration.local.test_local_backend import (
    Backend,
    start_backend,
    start_sandboxed_backend,
    wait_for,
)
from tests.integration.workspace.conftest import (
    api_token,
    browser,
    enrol,
    sign_in_through_hub,
    start_lab,
    wait_for_event,
)
from tests.integration.workspace.test_screen_output import BIG, BUDGET, WARN, Notebook

ENCLAVE = "ws-strong"
REPO = Path(__file__).resolve().parents[3]
LOOSENING = REPO / "tests/assets/policies/overlays/loosen_screen_budget.yaml"


@dataclass(frozen=True)
class Vendor:
    """The test vendor of a biometric authenticator model: its root, and what it signs
    attestations with."""

    root_pem: bytes
    key: ec.EllipticCurvePrivateKey
    x5c: list[bytes]


@dataclass(frozen=True)
class ProxiedServer:
    """What ``Notebook`` needs: the member's server behind the hub, and a token."""

    url: str
    token: str


@dataclass(frozen=True)
class Site:
    backend: Backend
    hub_url: str
    token: str
    server: ProxiedServer


@pytest.fixture(scope="module")
def vendor() -> Vendor:
    root_pem, key, x5c = attestation_ca(BIO_AAGUID)
    return Vendor(root_pem=root_pem, key=key, x5c=x5c)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, vendor: Vendor) -> Iterator[PortalProcess]:
    """The portal, trusting the vendor's root for keys of the biometric model."""
    state = tmp_path_factory.mktemp("portal")
    (state / "vendor-root.pem").write_bytes(vendor.root_pem)
    p = PortalProcess(
        state=state,
        extra=(
            *("--biometric-aaguid", f"{BIO_AAGUID_STR}=fpt"),
            *("--attestation-root", f"packed={state / 'vendor-root.pem'}"),
        ),
    ).start()
    yield p
    p.stop()


def _approve_pending(portal: PortalProcess) -> list[str]:
    """The officer approves each of the member's pending factors; their kinds."""
    r = portal.admin("GET", "/api/admin/users")
    (user,) = [u for u in r.json() if u["username"] == MEMBER]
    pending = [c for c in user["credentials"] if c["kind"] != "password" and not c["approved"]]
    for c in pending:
        url = f"/api/admin/users/{MEMBER}/credentials/{c['id']}/approve"
        assert portal.admin("POST", url).status_code == 200
    return [str(c["kind"]) for c in pending]


def _sign_in_with_the_tiers_factors(portal: PortalProcess, hub: str, vendor: Vendor) -> str:
    """Enrol the member (password, TOTP, the biometric key), have an officer approve
    the factors (the tier counts a new factor only then), sign in through the hub,
    which sends the member to the portal's step-up (the tier wants the key), present
    the key there; back at the hub, start the server. A hub API token of the member's."""
    key = SoftKey(origin=portal.base, aaguid=BIO_AAGUID, attestation=(vendor.key, vendor.x5c))
    secret = enrol(portal, MEMBER, key=key)
    assert _approve_pending(portal) == ["totp", "webauthn"]
    with browser() as b:
        r = sign_in_through_hub(b, hub, MEMBER, secret)
        assert r.url.path == f"/enclaves/{ENCLAVE}", (r.url, r.text[:2000])
        b.base_url = httpx.URL(portal.base)
        status, text = step_up(b, ENCLAVE, key)
        assert status == 303, text[:2000]
        r = b.get(f"/enclaves/{ENCLAVE}")  # allowed now: on to the hub, signed in
        assert r.status_code == 200, (r.url, r.text[:2000])
        assert (r.url.host, r.url.port) == (httpx.URL(hub).host, httpx.URL(hub).port), r.url
        return api_token(b, hub, MEMBER, start_lab(b, hub, MEMBER))


@pytest.fixture(scope="module")
def site(portal: PortalProcess, audit_service: ServiceProcess, vendor: Vendor) -> Iterator[Site]:
    with shared_state_dir() as root:
        (root / "datasets").mkdir()
        overlay = root / "tier-overlay.yaml"
        tightened = {"screen_output": {"budget_bytes": BUDGET, "warn_bytes": WARN}}
        overlay.write_text(json.dumps({"tiers": {"tommo-strong": tightened}}))  # JSON is YAML
        backend = start_sandboxed_backend(
            root=root,
            docs=[enclave_doc(ENCLAVE, tier="tommo-strong")],
            portal=portal,
            audit=audit_service,
            options=("--overlay", str(overlay)),
        )
        try:
            wait_for(f"{ENCLAVE}'s hub answers", lambda: backend.hub_answers(ENCLAVE))
            hub = backend.status(ENCLAVE)["hub_url"]
            token = _sign_in_with_the_tiers_factors(portal, hub, vendor)
            yield Site(
                backend=backend,
                hub_url=hub,
                token=token,
                server=ProxiedServer(url=f"{hub}/user/{MEMBER}", token=token),
            )
        finally:
            if backend.proc.poll() is None:
                backend.proc.send_signal(signal.SIGTERM)
                backend.proc.wait(timeout=120)


def _client(site: Site) -> httpx.Client:
    return httpx.Client(headers={"Authorization": f"token {site.token}"}, timeout=60)


def _notebook(site: Site) -> Notebook:
    with _client(site) as client:
        r = client.post(f"{site.server.url}/api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    return Notebook(site.server, r.json()["id"])  # type: ignore[arg-type]


def _recorded(site: Site, action: str, **details: Any) -> dict[str, Any]:
    return wait_for_event(
        site.backend.audit.env,
        source="workspace",
        match=lambda e: (
            e["action"] == action
            and e["enclave"] == ENCLAVE
            and all(e["details"].get(k) == v for k, v in details.items())
        ),
        timeout=90,
    )


def test_an_overlay_that_loosens_the_strong_tier_stops_the_backend_before_it_serves(
    portal: PortalProcess, audit_service: ServiceProcess
) -> None:
    with shared_state_dir() as root:  # a place where the sandbox could run
        (root / "enclaves").mkdir()
        doc = enclave_doc("ws-loose", tier="tommo-strong")
        (root / "enclaves" / "a.yaml").write_text(json.dumps(doc))
        proc = start_backend(
            directory=root / "enclaves",
            state=root / "state",
            log=root / "backend.log",
            portal=portal,
            audit=audit_service,
            extra=("--overlay", str(LOOSENING)),
        )
        try:
            assert proc.wait(timeout=60) == 2  # a deadline only: it exits before serving
        finally:
            if proc.poll() is None:  # never left running for the next test
                proc.kill()
                proc.wait()
        out = (root / "backend.log").read_text()
        assert not (root / "state").exists()  # nothing written, nothing served
    assert out.startswith("enclave: the tier overlay cannot be used: "), out
    assert "screen_output.budget_bytes" in out, out
    assert "Traceback" not in out, out
    assert len(out.strip().splitlines()) == 1, out
    registered = portal.admin("GET", "/api/admin/enclaves").json()
    assert "ws-loose" not in {e["name"] for e in registered}


def test_a_terminal_cannot_be_opened_in_a_strong_workspace(site: Site) -> None:
    with _client(site) as client:
        r = client.post(f"{site.server.url}/api/terminals")
        assert r.status_code in (403, 404), r.text
        assert client.get(f"{site.server.url}/terminals/1").status_code in (403, 404)
    refused = _recorded(site, "workspace.terminal.refused")
    assert (refused["outcome"], refused["actor"]) == ("denied", MEMBER)


def test_every_cell_executed_in_a_strong_workspace_is_recorded(site: Site) -> None:
    nb = _notebook(site)
    cells = ("print(6 * 7)", "import statistics\nprint(statistics.mean([1, 2, 3, 4]))")
    assert [nb.run(code).stdout for code in cells] == ["42\n", "2.5\n"]
    for code in cells:
        sha = hashlib.sha256(code.encode()).hexdigest()
        event = _recorded(site, "workspace.code.executed", sha256=sha)
        assert (event["actor"], event["details"]["code"]) == (MEMBER, code)


def test_printing_past_the_screen_budget_stops_a_strong_session_with_a_message(
    site: Site,
) -> None:
    nb = _notebook(site)
    warned = nb.run(f"print('x' * {BIG})")
    assert warned.stdout == "x" * BIG + "\n"  # under the site's budget: delivered
    assert "the session will be stopped" in warned.stderr
    stopped = nb.run(f"print('y' * {BIG})")
    assert "y" * 100 not in stopped.stdout
    assert "screen-output budget reached" in stopped.stderr
    assert "This session is being stopped" in stopped.stderr
    api = f"{site.hub_url}/hub/api/users/{MEMBER}"
    with _client(site) as client:
        wait_for(
            "the hub sees the member's server gone",
            lambda: not client.get(api).json().get("servers"),
            timeout=180,
        )
    exceeded = _recorded(site, "workspace.screen_output.exceeded")
    assert (exceeded["outcome"], exceeded["actor"]) == ("denied", MEMBER)
    assert exceeded["details"]["past_budget"] == "stop_session"
    assert exceeded["details"]["total_bytes"] <= BUDGET
