"""``enclave controller run --local``: real portal, real audit service, real JupyterHubs.

One backend process runs for the module over a directory of Enclave files; each test
changes the directory (or the processes) and polls, with a deadline, for what the
backend must then do. The last test stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controller.local import _proctree
from tests.e2e.auth.conftest import PortalProcess
from tests.harness.audit_service import ServiceProcess
from tests.harness.enclave_files import MEMBER, enclave_doc
from tests.integration.workspace.conftest import (
    audit_events,
    browser,
    enrol,
    sign_in_through_hub,
)

DEADLINE_S = 90.0
REPO = Path(__file__).resolve().parents[3]
TEST_SPAWNER = "tests.integration.local.spawners.RootAllowedTestSpawner"


def wait_for(what: str, check: Callable[[], Any], *, timeout: float = DEADLINE_S) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)  # poll interval


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass
class Backend:
    directory: Path
    state: Path
    log: Path
    proc: subprocess.Popen[bytes]
    portal: PortalProcess
    audit: ServiceProcess

    def write(self, file: str, doc: Any) -> None:
        path = self.directory / file
        tmp = path.with_name("." + file + ".tmp")
        tmp.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
        tmp.replace(path)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self, name: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(
                (self.state / "enclaves" / name / "status.json").read_text()
            )
        except (OSError, ValueError):
            return {}
        return data

    def hub_answers(self, name: str) -> bool:
        st = self.status(name)
        if st.get("phase") != "Ready":
            return False
        try:
            return httpx.get(st["hub_url"] + "/hub/api", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def registered(self) -> dict[str, Any]:
        r = self.portal.admin("GET", "/api/admin/enclaves")
        assert r.status_code == 200, r.text
        return {e["name"]: e for e in r.json()}

    def controller_events(self) -> list[dict[str, Any]]:
        return audit_events(self.audit.env, source="controller")


def start_backend(
    *,
    directory: Path,
    state: Path,
    log: Path,
    portal: PortalProcess,
    audit: ServiceProcess,
    extra: tuple[str, ...] = ("--spawner-class", TEST_SPAWNER),
) -> subprocess.Popen[bytes]:
    """``enclave controller run --local``; ``extra`` options (default: the test spawner)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                str(Path(sys.executable).with_name("enclave")),
                *("controller", "run", "--local", str(directory), "--state", str(state)),
                *("--portal-url", portal.base),
                *("--portal-admin-token-file", str(portal.state / "admin-token")),
                *("--audit-url", audit.url),
                *("--audit-tokens", str(audit.env.tokens_path)),
                *("--audit-store", audit.env.store_url),
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )


def start_sandboxed_backend(
    *,
    root: Path,
    docs: list[dict[str, Any]],
    portal: PortalProcess,
    audit: ServiceProcess,
    options: tuple[str, ...] = (),
) -> Backend:
    """The backend with its default (sandboxed) spawner over ``docs`` (one file each,
    in ``root/enclaves``), datasets from ``root/datasets``, state in ``root/state``,
    and more ``options`` (e.g. ``--overlay FILE``).
    ``root`` must be searchable by the sandboxes' host user (``shared_state_dir``)."""
    directory = root / "enclaves"
    directory.mkdir()
    for doc in docs:
        (directory / f"{doc['metadata']['name']}.yaml").write_text(yaml.safe_dump(doc))
    state, log = root / "state", root / "backend.log"
    proc = start_backend(
        directory=directory,
        state=state,
        log=log,
        portal=portal,
        audit=audit,
        extra=("--datasets", str(root / "datasets"), *options),
    )
    return Backend(directory=directory, state=state, log=log, proc=proc, portal=portal, audit=audit)


@pytest.fixture(scope="module")
def backend(
    portal: PortalProcess, audit_service: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    root = tmp_path_factory.mktemp("local")
    directory = root / "enclaves"
    directory.mkdir()
    state = root / "state"
    log = root / "backend.log"
    # present before the backend starts: one valid, one malformed, one expired (and
    # registered at the portal, as a backend that was down when notAfter passed left it)
    (directory / "good.yaml").write_text(yaml.safe_dump(enclave_doc("local-good")))
    bad = enclave_doc("local-bad")
    bad["spec"]["tier"] = "nbdc-extreme"
    (directory / "bad.yaml").write_text(yaml.safe_dump(bad))
    expired = enclave_doc("local-expired")
    expired["spec"]["approval"]["notAfter"] = "2021-01-01T00:00:00Z"
    (directory / "expired.yaml").write_text(yaml.safe_dump(expired))
    r = portal.admin(
        "PUT",
        "/api/admin/enclaves/local-expired",
        json={
            "tier": "nbdc-standard",
            "members": [{"user": MEMBER}],
            "networks": ["127.0.0.0/8"],
        },
    )
    assert r.status_code == 200, r.text
    proc = start_backend(
        directory=directory, state=state, log=log, portal=portal, audit=audit_service
    )
    b = Backend(
        directory=directory, state=state, log=log, proc=proc, portal=portal, audit=audit_service
    )
    yield b
    if b.proc.poll() is None:
        b.proc.kill()
        b.proc.wait()


def test_malformed_file_is_named_while_the_valid_enclaves_hub_serves(backend: Backend) -> None:
    wait_for("the valid enclave's hub answers", lambda: backend.hub_answers("local-good"))
    line = wait_for(
        "the malformed file is named with its field and reason",
        lambda: [ln for ln in backend.output().splitlines() if "bad.yaml" in ln],
    )[0]
    assert "refused" in line, line
    assert "spec.tier: must be one of" in line, line
    event = wait_for(
        "the refusal is in the audit log",
        lambda: [
            e
            for e in backend.controller_events()
            if e["action"] == "enclave.refused" and e["details"].get("file") == "bad.yaml"
        ],
    )[0]
    assert event["outcome"] == "failure"
    assert event["details"]["field"] == "spec.tier"
    assert event["details"]["reason"].startswith("must be one of")
    assert "local-good" in backend.registered()
    assert backend.proc.poll() is None


def test_expired_enclave_is_suspended_at_start(backend: Backend) -> None:
    wait_for("the expired enclave is suspended", lambda: backend.status("local-expired"))
    status = backend.status("local-expired")
    assert status["phase"] == "Suspended", status
    assert "notAfter" in status["reason"]
    wait_for(
        "its portal registration is removed", lambda: "local-expired" not in backend.registered()
    )
    wait_for(
        "the suspension is in the audit log",
        lambda: [
            e
            for e in backend.controller_events()
            if e["action"] == "enclave.deprovisioned" and e["enclave"] == "local-expired"
        ],
    )


def test_changed_file_re_registers_the_enclave(backend: Backend) -> None:
    wait_for("the valid enclave's hub answers", lambda: backend.hub_answers("local-good"))
    before = backend.status("local-good")["hub_pid"]
    doc = enclave_doc("local-good")
    doc["spec"]["members"].append({"user": "local-pi", "role": "pi"})
    backend.write("good.yaml", doc)
    wait_for(
        "the portal lists the new member",
        lambda: "local-pi" in {m["user"] for m in backend.registered()["local-good"]["members"]},
    )
    wait_for(
        "the hub restarted with the new configuration answers",
        lambda: (
            backend.status("local-good").get("hub_pid") not in (None, before)
            and backend.hub_answers("local-good")
        ),
    )
    assert "local-pi" in (backend.state / "enclaves/local-good/jupyterhub_config.py").read_text()


def test_a_hub_that_dies_is_restarted(backend: Backend) -> None:
    wait_for("the valid enclave's hub answers", lambda: backend.hub_answers("local-good"))
    pid = backend.status("local-good")["hub_pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(
        "a new hub process answers",
        lambda: (
            backend.status("local-good").get("hub_pid") not in (None, pid)
            and backend.hub_answers("local-good")
        ),
    )


def test_removed_file_stops_its_hub(backend: Backend) -> None:
    backend.write("second.yaml", enclave_doc("local-second"))
    wait_for("the second hub answers", lambda: backend.hub_answers("local-second"))
    pid = backend.status("local-second")["hub_pid"]
    (backend.directory / "second.yaml").unlink()
    wait_for("its hub process is gone", lambda: not alive(pid))
    wait_for(
        "its status says stopped", lambda: backend.status("local-second")["phase"] == "Stopped"
    )
    wait_for("the portal no longer lists it", lambda: "local-second" not in backend.registered())
    assert backend.hub_answers("local-good")


def test_a_members_workspace_records_with_the_enclaves_token_and_its_own_spool(
    backend: Backend,
) -> None:
    wait_for("the valid enclave's hub answers", lambda: backend.hub_answers("local-good"))
    hub = backend.status("local-good")["hub_url"]
    secret = enrol(backend.portal, MEMBER)
    with browser() as b:
        r = sign_in_through_hub(b, hub, MEMBER, secret)
        assert r.status_code == 200, r.text[:2000]
        xsrf = next(c.value for c in b.cookies.jar if c.name == "_xsrf" and c.path == "/hub/")
        r = b.post(f"{hub}/hub/api/users/{MEMBER}/server", headers={"X-XSRFToken": xsrf or ""})
        assert r.status_code in (201, 202), r.text
        wait_for(
            "JupyterLab answers",
            lambda: b.get(f"{hub}/user/{MEMBER}/lab").url.path == f"/user/{MEMBER}/lab",
        )
        assert b.get(f"{hub}/user/{MEMBER}/files/x.csv?download=1").status_code == 403
    wait_for(
        "the workspace's refusal is in the audit log, bound to the enclave",
        lambda: [
            e
            for e in audit_events(backend.audit.env, source="workspace")
            if e["action"] == "workspace.download.refused" and e["enclave"] == "local-good"
        ],
    )
    spool = backend.state / "enclaves/local-good/workspace-spools" / f"{MEMBER}.db"
    assert spool.exists()


def test_file_made_invalid_stops_its_hub_rather_than_serving_the_old_spec(
    backend: Backend,
) -> None:
    backend.write("third.yaml", enclave_doc("local-third"))
    wait_for("the third hub answers", lambda: backend.hub_answers("local-third"))
    pid = backend.status("local-third")["hub_pid"]
    broken = enclave_doc("local-third")
    broken["spec"]["members"] = []
    backend.write("third.yaml", broken)
    wait_for("its hub process is gone", lambda: not alive(pid))
    wait_for(
        "the file is named with field and reason",
        lambda: "third.yaml: spec.members: must not be empty" in backend.output(),
    )
    wait_for("the portal no longer lists it", lambda: "local-third" not in backend.registered())


def test_sigterm_stops_every_child(backend: Backend) -> None:
    wait_for("the valid enclave's hub answers", lambda: backend.hub_answers("local-good"))
    hub_pid = backend.status("local-good")["hub_pid"]
    # the hub and everything it started (its idle culler, if any: with the proxy it
    # runs in the hub's process by default)
    tree = _proctree.tree(backend.proc.pid)
    assert hub_pid in tree
    backend.proc.send_signal(signal.SIGTERM)
    assert backend.proc.wait(timeout=DEADLINE_S) == 0, backend.output()[-2000:]
    for pid, started in tree.items():
        wait_for(f"process {pid} has exited", lambda p=pid, t=started: not _proctree.alive(p, t))
    assert "stopped" in backend.output().splitlines()[-1]


def test_file_removed_while_the_backend_was_down_is_deregistered_at_start(
    backend: Backend,
) -> None:
    assert backend.proc.poll() is not None  # stopped by the test above
    assert "local-good" in backend.registered()
    (backend.directory / "good.yaml").unlink()
    backend.proc = start_backend(
        directory=backend.directory,
        state=backend.state,
        log=backend.log,
        portal=backend.portal,
        audit=backend.audit,
    )
    wait_for("the portal no longer lists it", lambda: "local-good" not in backend.registered())
    wait_for("its status says stopped", lambda: backend.status("local-good")["phase"] == "Stopped")
    backend.proc.send_signal(signal.SIGTERM)
    assert backend.proc.wait(timeout=DEADLINE_S) == 0, backend.output()[-2000:]


def test_notafter_passing_while_running_suspends_the_enclave(
    portal: PortalProcess, audit_service: ServiceProcess, tmp_path: Path
) -> None:
    """The backend in this process, its clock moved past notAfter between two passes."""
    from controller.local._backend import LocalBackend, LocalSettings

    directory = tmp_path / "enclaves"
    directory.mkdir()
    (directory / "late.yaml").write_text(yaml.safe_dump(enclave_doc("local-late")))
    lines: list[str] = []
    clock = [datetime(2030, 1, 1, tzinfo=UTC)]
    settings = LocalSettings(
        enclaves_dir=directory,
        state_dir=tmp_path / "state",
        portal_url=portal.base,
        portal_admin_token_file=portal.state / "admin-token",
        audit_url=audit_service.url,
        audit_tokens_file=audit_service.env.tokens_path,
        audit_store=audit_service.env.store_url,
        spawner_class=TEST_SPAWNER,
    )
    backend = LocalBackend(settings=settings, say=lines.append, now=lambda: clock[0])
    backend.open()
    try:
        backend.reconcile()
        pid = backend.running["local-late"].pid
        assert alive(pid)
        assert "local-late" in {
            e["name"] for e in portal.admin("GET", "/api/admin/enclaves").json()
        }
        clock[0] = datetime(2099, 1, 1, 0, 0, 1, tzinfo=UTC)  # notAfter is 2099-01-01T00:00:00Z
        backend.reconcile()
        assert "local-late" not in backend.running
        wait_for("its hub process is gone", lambda: not alive(pid))
        enclaves = {e["name"] for e in portal.admin("GET", "/api/admin/enclaves").json()}
        assert "local-late" not in enclaves
        status = json.loads((settings.state_dir / "enclaves/local-late/status.json").read_text())
        assert status["phase"] == "Suspended"
        assert any("local-late: suspended (notAfter" in line for line in lines), lines
    finally:
        backend.close()


def test_with_configurable_http_proxy_each_hub_has_its_proxy_and_culler_beside_it(
    portal: PortalProcess, audit_service: ServiceProcess, tmp_path: Path
) -> None:
    """``--proxy configurable-http-proxy``: the arrangement a hub in a pod has."""
    directory = tmp_path / "enclaves"
    directory.mkdir()
    (directory / "chp.yaml").write_text(yaml.safe_dump(enclave_doc("local-chp")))
    b = Backend(
        directory=directory,
        state=tmp_path / "state",
        log=tmp_path / "backend.log",
        proc=start_backend(
            directory=directory,
            state=tmp_path / "state",
            log=tmp_path / "backend.log",
            portal=portal,
            audit=audit_service,
            extra=("--spawner-class", TEST_SPAWNER, "--proxy", "configurable-http-proxy"),
        ),
        portal=portal,
        audit=audit_service,
    )
    try:
        wait_for("the hub answers through its proxy", lambda: b.hub_answers("local-chp"))
        hub = b.status("local-chp")["hub_pid"]

        def helpers() -> set[str]:
            found = set()
            for pid in _proctree.tree(hub):
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                found |= {
                    n
                    for n in ("configurable-http-proxy", "jupyterhub_idle_culler")
                    if n.encode() in argv
                }
            return found

        wait_for("the proxy and the culler run beside the hub", lambda: len(helpers()) == 2)
        tree = _proctree.tree(b.proc.pid)
        b.proc.send_signal(signal.SIGTERM)
        assert b.proc.wait(timeout=DEADLINE_S) == 0, b.output()[-2000:]
        for pid, started in tree.items():
            wait_for(
                f"process {pid} has exited", lambda p=pid, t=started: not _proctree.alive(p, t)
            )
    finally:
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait()
