"""The local backend's own hubs run each member's server in the sandbox, for real.

``enclave controller run --local`` (its default spawner: the audited
``SandboxSpawner``) serves two enclaves; the member signs in at the real portal
through the first enclave's hub, starts the server, and over the hub's proxied URL
runs code in a real kernel (Jupyter REST + the kernel websocket) that reads the
enclave's dataset and computes a statistic. Then, from that kernel, each attack
named below fails while the workspace's own hub API works. The last test stops the
backend with SIGTERM and polls /proc until none of its process tree is left.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.auth.conftest import PortalProcess
from tests.harness.audit_service import ServiceProcess
from tests.harness.enclave_files import MEMBER, enclave_doc
from tests.harness.local_hub import Workspace, cmdline, descendants, shared_state_dir
from tests.integration.local.conftest import HostService, host_address
from tests.integration.local.test_local_backend import (
    Backend,
    alive,
    start_sandboxed_backend,
    wait_for,
)
from tests.integration.local.test_sandbox_escapes import _CONNECT, _WRITES
from tests.integration.workspace.conftest import (
    api_token,
    audit_events,
    browser,
    enrol,
    sign_in_through_hub,
    start_lab,
)

DATASET_FILE = "genus_abundance.tsv"
ROWS = [("FAKE-0001", 0.25), ("FAKE-0002", 0.5), ("FAKE-0003", 0.125), ("FAKE-0004", 0.75)]


@dataclass(frozen=True)
class ProxiedHub:
    """What ``Workspace`` needs: the hub's public URL and a token of the member's."""

    url: str
    token: str


@dataclass
class Site:
    backend: Backend
    workspace: Workspace
    hub_url: str
    other_hub: dict[str, Any]
    dataset: Path
    wildcard: HostService
    host_ip: str
    token: str


def _kernel_connect(site: Site, host: str, port: int) -> str:
    return site.workspace.run(_CONNECT.format(host=host, port=port)).strip()


@pytest.fixture(scope="module")
def site(portal: PortalProcess, audit_service: ServiceProcess) -> Iterator[Site]:
    with shared_state_dir() as root:
        datasets = root / "datasets"
        dataset = datasets / "ds-16s"
        dataset.mkdir(parents=True)
        rows = "".join(f"{who}\t{value}\n" for who, value in ROWS)
        (dataset / DATASET_FILE).write_text("participant\tBacteroides\n" + rows)
        # writable on the host by anyone: only the read-only bind can stop a write
        dataset.chmod(0o777)
        (dataset / DATASET_FILE).chmod(0o666)
        mount = {"name": "microbiome-16s", "persistentVolume": "ds-16s"}
        alpha = enclave_doc("ws-alpha", datasets=[{**mount, "mountPath": "/data/microbiome-16s"}])
        backend = start_sandboxed_backend(
            root=root, docs=[alpha, enclave_doc("ws-beta")], portal=portal, audit=audit_service
        )
        proc = backend.proc
        try:
            for name in ("ws-alpha", "ws-beta"):
                wait_for(f"{name}'s hub answers", lambda n=name: backend.hub_answers(n))
            hub = backend.status("ws-alpha")["hub_url"]
            secret = enrol(portal, MEMBER)
            with browser() as b:
                r = sign_in_through_hub(b, hub, MEMBER, secret)
                assert r.status_code == 200, r.text[:2000]
                token = api_token(b, hub, MEMBER, start_lab(b, hub, MEMBER))
            yield Site(
                backend=backend,
                workspace=Workspace(hub=ProxiedHub(url=hub, token=token), user=MEMBER),  # type: ignore[arg-type]
                hub_url=hub,
                other_hub=backend.status("ws-beta"),
                dataset=dataset,
                wildcard=HostService.on_ip("0.0.0.0"),
                host_ip=host_address(),
                token=token,
            )
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=120)


def test_member_signed_in_at_the_portal_computes_a_statistic_in_a_sandboxed_kernel(
    site: Site,
) -> None:
    out = site.workspace.run(
        "import csv, os, statistics\n"
        f"rows = list(csv.DictReader(open('/data/microbiome-16s/{DATASET_FILE}'), "
        "delimiter='\\t'))\n"
        "print(statistics.mean(float(r['Bacteroides']) for r in rows), len(rows))\n"
        "print(os.getuid(), os.getcwd())\n"
    )
    mean, count, uid, cwd = out.split()
    assert float(mean) == statistics.mean(v for _, v in ROWS)
    assert int(count) == len(ROWS)
    assert (uid, cwd) == ("65534", "/home/researcher")
    started = [
        e
        for e in audit_events(site.backend.audit.env, source="hub")
        if e["action"] == "hub.server.started" and e["enclave"] == "ws-alpha"
    ]
    assert started[-1]["details"]["spawner"] == "AuditedSandboxSpawner", started


def test_kernel_cannot_reach_an_outside_address(site: Site) -> None:
    for host in ("203.0.113.10", "1.1.1.1", "2001:db8::1"):
        assert _kernel_connect(site, host, 443) == "ENETUNREACH"


def test_kernel_cannot_reach_the_hosts_portal_port(site: Site) -> None:
    port = site.backend.portal.port
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    # the portal on the host's loopback: the sandbox's 127.0.0.1 is its own
    assert _kernel_connect(site, "127.0.0.1", port) == "ECONNREFUSED"
    assert _kernel_connect(site, "0.0.0.0", port) == "ECONNREFUSED"
    assert _kernel_connect(site, site.host_ip, port) == "ENETUNREACH"
    # a port bound to 0.0.0.0 on the host (as a portal listening on every interface)
    wildcard = site.wildcard.tcp_port
    for host, expected in (
        ("127.0.0.1", "ECONNREFUSED"),
        ("0.0.0.0", "ECONNREFUSED"),
        (site.host_ip, "ENETUNREACH"),
    ):
        assert _kernel_connect(site, host, wildcard) == expected, host
    assert site.wildcard.contacts == []


def test_kernel_cannot_reach_another_enclaves_hub(site: Site) -> None:
    other = int(site.other_hub["hub_url"].rsplit(":", 1)[1])
    assert httpx.get(site.other_hub["hub_url"] + "/hub/api", timeout=5).status_code == 200
    ports = (other, *(p for p in _ports(site, "ws-beta")))
    for host in ("127.0.0.1", site.host_ip):
        for port in ports:
            assert _kernel_connect(site, host, port) in {"ECONNREFUSED", "ENETUNREACH"}


def _ports(site: Site, name: str) -> list[int]:
    ports = json.loads((site.backend.state / "enclaves" / name / "ports.json").read_text())
    return [int(ports["hub_api"]), int(ports["proxy_api"])]


def test_kernel_cannot_resolve_dns_names(site: Site) -> None:
    out = site.workspace.run(
        "import socket\n"
        "for name in ('example.com', 'pypi.org', 'localhost.localdomain.example'):\n"
        "    try:\n"
        "        print(name, socket.getaddrinfo(name, 443)[0][4])\n"
        "    except socket.gaierror as e:\n"
        "        print(name, 'UNRESOLVED')\n"
    )
    assert [line.split()[1] for line in out.splitlines()] == ["UNRESOLVED"] * 3, out


def test_kernel_cannot_write_to_a_dataset(site: Site) -> None:
    attempts = (
        (f"/data/microbiome-16s/{DATASET_FILE}", "a"),
        ("/data/microbiome-16s/copy.tsv", "w"),
    )
    out = site.workspace.run(_WRITES.format(attempts=attempts))
    assert out.split() == ["EROFS", "EROFS"]
    assert sorted(os.listdir(site.dataset)) == [DATASET_FILE]


def test_workspace_reaches_its_own_hub_api(site: Site) -> None:
    out = site.workspace.run(
        "import json, os, urllib.request\n"
        "api = os.environ['JUPYTERHUB_API_URL']\n"
        "req = urllib.request.Request(api + '/user', headers={\n"
        "    'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})\n"
        "print(json.load(urllib.request.urlopen(req))['name'])\n"
    )
    assert out.strip() == MEMBER


def test_workspace_records_with_its_enclaves_token_which_no_host_argv_or_env_shows(
    site: Site,
) -> None:
    # the server's events reach the intake, bound to the enclave (a refused download)
    with httpx.Client(headers={"Authorization": f"token {site.token}"}) as client:
        r = client.get(f"{site.hub_url}/user/{MEMBER}/files/x.tsv?download=1", timeout=30)
    assert r.status_code == 403
    wait_for(
        "the workspace's refusal is recorded, bound to its enclave",
        lambda: [
            e
            for e in audit_events(site.backend.audit.env, source="workspace")
            if e["action"] == "workspace.download.refused" and e["enclave"] == "ws-alpha"
        ],
    )
    token = (site.backend.state / "enclaves/ws-alpha/workspace_token").read_text().strip()
    for pid in [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]:
        assert token.encode() not in cmdline(pid), pid
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        assert token.encode() not in environ, pid
    # inside, the server reads it from its own sockets directory: mode 0400, its user's
    sockets = site.backend.state / "sandboxes/sockets/ws-alpha"
    (copy,) = sockets.glob("u*/audit_token")
    st = copy.stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o400, 65534)


def _final_screen_records(site: Site) -> dict[str, dict[str, Any]]:
    """ws-alpha's final ``workspace.screen_output`` records, by event id."""
    return {
        e["id"]: e
        for e in audit_events(site.backend.audit.env, source="workspace")
        if e["action"] == "workspace.screen_output"
        and e["enclave"] == "ws-alpha"
        and e["details"].get("final")
    }


def _restart_server(site: Site, client: httpx.Client) -> None:
    api = f"{site.hub_url}/hub/api/users/{MEMBER}"
    assert client.post(f"{api}/server").status_code in (201, 202)
    wait_for(
        "the server is ready again",
        lambda: client.get(api).json().get("servers", {}).get("", {}).get("ready"),
        timeout=180,
    )
    site.workspace.forget_kernel()


def test_the_bytes_a_session_showed_are_on_record_after_its_server_is_stopped(
    site: Site,
) -> None:
    before = _final_screen_records(site)
    shown = site.workspace.run("print('x' * 5000)\n")
    assert shown.strip() == "x" * 5000
    api = f"{site.hub_url}/hub/api/users/{MEMBER}"
    with httpx.Client(headers={"Authorization": f"token {site.token}"}, timeout=30) as client:
        # what the researcher's "Stop my server" asks of the hub
        assert client.delete(f"{api}/server").status_code in (202, 204)
        wait_for("the server stopped", lambda: not client.get(api).json().get("servers"))
        try:
            (final,) = wait_for(
                "the session's final screen-output record is in the audit log",
                lambda: [e for i, e in _final_screen_records(site).items() if i not in before],
                timeout=120,
            )
        finally:
            _restart_server(site, client)  # the next tests use the server
    assert final["details"]["kernel_bytes"] > 5000
    assert final["actor"] == MEMBER


def test_home_is_private_to_the_enclave_and_survives_a_server_restart(site: Site) -> None:
    site.workspace.run("open('notes.txt', 'w').write('kept')\n")
    home = site.backend.state / "sandboxes/homes/ws-alpha"
    st = home.stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o700, 65534)  # nobody else's, on the host
    assert (home / "notes.txt").read_text() == "kept"
    api = f"{site.hub_url}/hub/api/users/{MEMBER}"
    with httpx.Client(headers={"Authorization": f"token {site.token}"}, timeout=30) as client:
        assert client.delete(f"{api}/server").status_code in (202, 204)
        wait_for("the server stopped", lambda: not client.get(api).json().get("servers"))
        _restart_server(site, client)
    state = site.backend.state
    out = site.workspace.run(
        f"import os; print(open('notes.txt').read(), os.path.exists({str(state)!r}))"
    )
    assert out.split() == ["kept", "False"]  # its home, and no way to the backend's state


def test_sigterm_after_a_hub_crash_leaves_no_process_of_the_backends_tree(site: Site) -> None:
    proc = site.backend.proc
    tree = {pid: _started(pid) for pid in descendants(proc.pid)}
    names = {_name(pid) for pid in tree}
    # what must not be left behind: the servers' bridges and sandboxes (each hub proxies
    # and culls in its own process: no configurable-http-proxy, no culler process)
    assert {"bwrap", "socat"} <= names, names
    assert not names & {"configurable-http-proxy", "jupyterhub_idle_culler"}, names
    # a hub that crashes cannot stop its servers' sandboxes and bridges
    os.kill(site.other_hub["hub_pid"], signal.SIGKILL)
    wait_for("the crashed hub is gone", lambda: not alive(site.other_hub["hub_pid"]))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, site.backend.output()[-2000:]

    def left() -> list[str]:
        return [f"{p} {_name(p)}" for p, t in tree.items() if alive(p) and _started(p) == t]

    try:
        wait_for("no process of the backend's tree is left", lambda: not left(), timeout=60)
    except AssertionError:
        raise AssertionError(f"left running after the backend stopped: {left()}") from None
    finally:
        for entry in left():  # never leave them to the next test, even when this one fails
            os.kill(int(entry.split()[0]), signal.SIGKILL)


def test_the_bytes_a_session_showed_are_on_record_after_its_hub_is_stopped(site: Site) -> None:
    if site.backend.proc.poll() is None:  # run alone: stop the backend here, as the test above
        site.workspace.run("print('y' * 5000)\n")
        site.backend.proc.send_signal(signal.SIGTERM)
        assert site.backend.proc.wait(timeout=120) == 0, site.backend.output()[-2000:]
    stopped = [
        e
        for e in audit_events(site.backend.audit.env, source="hub")
        if e["action"] == "hub.server.stopped" and e["enclave"] == "ws-alpha"
    ]
    assert stopped  # the backend's SIGTERM stopped the hub, and the hub its server
    # every session that ended, the last one ended by its hub stopping, has its counts
    wait_for(
        "a final screen-output record for each session of ws-alpha",
        lambda: len(_final_screen_records(site)) >= len(stopped),
        timeout=120,
    )
    assert len(_final_screen_records(site)) == len(stopped)


def _started(pid: int) -> str:
    """The process's start time (field 22 of /proc/PID/stat): tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _name(pid: int) -> str:
    argv = cmdline(pid).split(b"\0")
    for part in argv[:3]:
        for known in (b"configurable-http-proxy", b"jupyterhub_idle_culler", b"bwrap", b"socat"):
            if part.endswith(known):
                return known.decode()
    return argv[0].decode(errors="replace").rsplit("/", 1)[-1]
