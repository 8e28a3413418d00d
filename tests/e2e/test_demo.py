"""``make demo``'s command, as a newcomer runs it: real audit service, real portal.

Starts ``enclave demo`` on free ports with a fresh state directory, follows the
printed instructions far enough to prove they are true (the portal's invitation
page, the officer UI, one answering JupyterHub per demo enclave, registered at the
portal by the local backend), stops it with Ctrl-C, checks that every hub stopped
and that the audit log it wrote verifies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from audit import Query, open_log
from controller._demo import DEMO_USER
from tests.e2e.demo_process import DEMO_ENCLAVES, DemoRun, running_demo, verify_log
from tests.harness.local_hub import shared_state_dir
from tests.integration.workspace.conftest import (
    accept_invitation,
    browser,
    sign_in_through_hub,
    start_lab,
)


def test_demo_starts_prints_how_to_log_in_and_records_everything():
    with shared_state_dir() as root:  # the sandboxes' host user must reach it (o+x)
        state = root / "demo"
        with running_demo(state) as demo:
            hub_pids = _follow_the_instructions(demo)
        for pid in hub_pids:  # Ctrl-C stopped every hub
            assert (
                not Path(f"/proc/{pid}").exists()
                or "zombie" in Path(f"/proc/{pid}/status").read_text()
            )
        _check_the_log(demo.store)


def _follow_the_instructions(demo: DemoRun) -> list[int]:
    """Follow the printed instructions far enough to prove them true; the hubs' pids."""
    out, state = demo.out, demo.state
    # 0. the fixed contract (DESIGN.md "CLI"): one "Portal: <url>" and one "Audit: <url>" line
    assert re.search(rf"^Portal: http://localhost:{demo.portal_port}$", out, re.M), out
    assert re.search(rf"^Audit: http://localhost:{demo.audit_port}/ui$", out, re.M), out
    # 1. the invitation code it printed opens the portal's invitation flow
    portal = f"http://127.0.0.1:{demo.portal_port}"
    page = httpx.get(f"{portal}/invite", timeout=10)
    assert page.status_code == 200
    assert "invitation" in page.text.lower()
    # 2. the officer UI offers the portal sign-in (an officer was invited for it) and
    #    keeps the bootstrap token, whose file holds one
    login = httpx.get(f"http://127.0.0.1:{demo.audit_port}/ui/login", timeout=10)
    assert login.status_code == 200
    assert 'href="/ui/login/oidc"' in login.text
    assert re.search(r"officer invitation code (\S+)", out), out
    begin = httpx.get(f"http://127.0.0.1:{demo.audit_port}/ui/login/oidc", timeout=10)
    assert begin.status_code == 303
    assert begin.headers["location"].startswith(f"{demo.portal}/oidc/authorize?")
    assert (state / "officer-token").stat().st_mode & 0o077 == 0
    # 3. one real JupyterHub per demo enclave answers, its sign-in going to the portal
    for name, hub in demo.hubs.items():
        assert httpx.get(hub + "/hub/api", timeout=10).status_code == 200
        login = httpx.get(hub + "/hub/oauth_login", timeout=10)
        assert login.status_code == 302, login.text
        assert login.headers["location"].startswith(f"{demo.portal}/oidc/authorize?")
        assert (state / "enclaves" / f"{name}.yaml").exists()
    dataset = state / "datasets" / "demo-microbiome-16s-v1"
    assert "SYNTHETIC" in (dataset / "genus_abundance.tsv").read_text()
    assert dataset.stat().st_mode & 0o222 == 0  # read-only
    # 4. the demo researcher enrols with the printed code, enters demo-nbdc-standard
    #    through the portal and gets a running JupyterLab (in its sandbox)
    secret = accept_invitation(demo.portal, demo.invitation_code)
    hub = demo.hubs["demo-nbdc-standard"]
    with browser() as b:
        r = sign_in_through_hub(b, hub, DEMO_USER, secret)
        assert r.status_code == 200, r.text[:2000]
        start_lab(b, hub, DEMO_USER)  # JupyterLab loads (from the sandboxed server)
    return [
        json.loads((state / "local/enclaves" / n / "status.json").read_text())["hub_pid"]
        for n in DEMO_ENCLAVES
    ]


def _check_the_log(store: str) -> None:
    log = open_log(store)
    try:
        events, _ = log.query(Query(source="portal"), cursor=None, limit=100)
    finally:
        log.close()
    actions = sorted(e.event.action for e in events)
    assert actions.count("admin.enclave.registered") == 4
    assert "admin.user.invited" in actions
    # registered before the audit service ran: the portal's spool delivered it later
    assert "admin.client.registered" in actions
    verify_log(store)
