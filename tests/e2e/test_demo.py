"""``make demo``'s command, as a newcomer runs it: real audit service, real portal.

Starts ``enclave demo`` on free ports with a fresh state directory, follows the
printed instructions far enough to prove they are true (the portal's invitation
page, the officer UI, one answering JupyterHub per demo enclave, registered at the
portal by the local backend), stops it with Ctrl-C, checks that every hub stopped
and that the audit log it wrote verifies.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from audit import Query, open_log
from controller._demo import DEMO_USER
from tests.harness.audit_service import free_port
from tests.harness.local_hub import shared_state_dir
from tests.integration.workspace.conftest import (
    accept_invitation,
    browser,
    sign_in_through_hub,
    start_lab,
)

ENCLAVE = Path(sys.executable).with_name("enclave")
DEMO_ENCLAVES = ("demo-nbdc-standard", "demo-nbdc-high", "demo-tommo-standard", "demo-tommo-strong")


def test_demo_starts_prints_how_to_log_in_and_records_everything():
    with shared_state_dir() as root:  # the sandboxes' host user must reach it (o+x)
        _run_demo(root / "demo")


def _run_demo(state: Path) -> None:
    audit_port, portal_port = free_port(), free_port()
    proc = subprocess.Popen(
        [str(ENCLAVE), "demo", "--audit-port", str(audit_port), "--portal-port", str(portal_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "ENCLAVE_DEMO_DIR": str(state)},
    )
    out = ""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        while "the enclave's home kept in" not in out:
            assert time.monotonic() < deadline, out
            line = proc.stdout.readline()
            assert line, f"demo exited early:\n{out}"
            out += line
        # 0. the fixed contract (DESIGN.md "CLI"): one "Portal: <url>" and one "Audit: <url>" line
        assert re.search(rf"^Portal: http://localhost:{portal_port}$", out, re.M), out
        assert re.search(rf"^Audit: http://localhost:{audit_port}/ui$", out, re.M), out
        # 1. the invitation code it printed opens the portal's invitation flow
        code = re.search(r"enter the invitation code (\S+)", out)
        assert code, out
        portal = f"http://127.0.0.1:{portal_port}"
        page = httpx.get(f"{portal}/invite", timeout=10)
        assert page.status_code == 200
        assert "invitation" in page.text.lower()
        # 2. the officer UI offers the portal sign-in (an officer was invited for it) and
        #    keeps the bootstrap token, whose file holds one
        login = httpx.get(f"http://127.0.0.1:{audit_port}/ui/login", timeout=10)
        assert login.status_code == 200
        assert 'href="/ui/login/oidc"' in login.text
        assert re.search(r"officer invitation code (\S+)", out), out
        begin = httpx.get(f"http://127.0.0.1:{audit_port}/ui/login/oidc", timeout=10)
        assert begin.status_code == 303
        assert begin.headers["location"].startswith(
            f"http://localhost:{portal_port}/oidc/authorize?"
        )
        assert (state / "officer-token").stat().st_mode & 0o077 == 0
        # 3. one real JupyterHub per demo enclave answers, its sign-in going to the portal
        hubs = {}
        for name in DEMO_ENCLAVES:
            m = re.search(rf"^    {name} +(http://localhost:\d+)$", out, re.M)
            assert m, out
            hubs[name] = m.group(1)
            assert httpx.get(hubs[name] + "/hub/api", timeout=10).status_code == 200
            login = httpx.get(hubs[name] + "/hub/oauth_login", timeout=10)
            assert login.status_code == 302, login.text
            assert login.headers["location"].startswith(
                f"http://localhost:{portal_port}/oidc/authorize?"
            )
            assert (state / "enclaves" / f"{name}.yaml").exists()
        dataset = state / "datasets" / "demo-microbiome-16s-v1"
        assert "SYNTHETIC" in (dataset / "genus_abundance.tsv").read_text()
        assert dataset.stat().st_mode & 0o222 == 0  # read-only
        # 4. the demo researcher enrols with the printed code, enters demo-nbdc-standard
        #    through the portal and gets a running JupyterLab (in its sandbox)
        secret = accept_invitation(f"http://localhost:{portal_port}", code.group(1))
        hub = hubs["demo-nbdc-standard"]
        with browser() as b:
            r = sign_in_through_hub(b, hub, DEMO_USER, secret)
            assert r.status_code == 200, r.text[:2000]
            start_lab(b, hub, DEMO_USER)  # JupyterLab loads (from the sandboxed server)
        hub_pids = [
            json.loads((state / "local/enclaves" / n / "status.json").read_text())["hub_pid"]
            for n in DEMO_ENCLAVES
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + rest
    for pid in hub_pids:  # Ctrl-C stopped every hub
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    store = f"sqlite:///{state / 'audit.db'}"
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
    r = subprocess.run(
        [str(ENCLAVE), "audit", "verify", "--store", store],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
