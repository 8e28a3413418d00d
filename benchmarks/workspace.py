"""Benchmark: from the second factor at the portal to a usable JupyterLab, locally.

Run with `make bench`, or `.venv/bin/python -P benchmarks/workspace.py`.

The real audit service, the real portal and ``enclave controller run --local`` (its
default spawner: the audited bubblewrap sandbox) serve one enclave over a small
dataset. For each of N members (TOTP codes are single-use, so one member per
sample): sign in through the hub's OAuth login at the portal; the clock starts as
the TOTP code (the second factor) is submitted, and stops once a kernel of that
member's JupyterLab answered an execution and went idle (the sandboxed server
started through the hub's API, ``/lab`` loaded, a kernel started through the
proxied REST API, one cell run over its websocket). Each member's server is stopped
before the next sample.

Also reported: the resident memory (RSS, summed over the process tree) of the idle
enclave (the hub, its configurable-http-proxy and its idle culler; no server), and
of one member's server with one idle kernel (runuser, bwrap, socat, the server, the
kernel). Targets: <= 8 s and <= 150 MB. Last line: one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.local import _proctree  # noqa: E402
from tests.e2e.auth.conftest import PortalProcess  # noqa: E402
from tests.harness.audit_service import ServiceProcess, make_audit_env  # noqa: E402
from tests.harness.enclave_files import enclave_doc  # noqa: E402
from tests.harness.local_hub import Workspace, shared_state_dir  # noqa: E402
from tests.integration.local.test_local_backend import (  # noqa: E402
    Backend,
    start_sandboxed_backend,
    wait_for,
)
from tests.integration.workspace.conftest import (  # noqa: E402
    api_token,
    browser,
    enrol,
    sign_in_through_hub,
    start_lab,
)

N = 3
ENCLAVE = "bench-workspace"
TARGET_S = 8.0
TARGET_MB = 150.0


class _Hub:
    """What ``Workspace`` needs: the hub's public URL and a token of the member's."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token


def _rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(x.split()[1]) for x in status.splitlines() if x[:6] == "VmRSS:"), 0)
    return total


def _sample(
    backend: Backend, hub: str, user: str, secret: str, phases: dict[str, list[float]]
) -> tuple[float, int]:
    """Seconds from the second factor to an idle kernel; the server tree's RSS (KiB).
    ``phases`` gets the seconds from the second factor to the end of each step."""
    started = [0.0]
    with browser() as b:
        r = sign_in_through_hub(
            b, hub, user, secret, on_second_factor=lambda: started.__setitem__(0, time.monotonic())
        )
        assert r.status_code == 200, r.text[:500]
        phases["signed_in"].append(time.monotonic() - started[0])
        headers = start_lab(b, hub, user)
        phases["lab_loaded"].append(time.monotonic() - started[0])
        token = api_token(b, hub, user, headers)
        workspace = Workspace(hub=_Hub(hub, token), user=user)  # type: ignore[arg-type]
        workspace.run("pass")  # returns once the kernel replied and went idle
        seconds = time.monotonic() - started[0]
        hub_pid = backend.status(ENCLAVE)["hub_pid"]
        culler_and_proxy = _idle_enclave_pids(hub_pid)
        server = [p for p in _proctree.tree(hub_pid) if p not in culler_and_proxy]
        server_kib = _rss_kib(server)
        r = b.delete(f"{hub}/hub/api/users/{user}/server", headers=headers)
        assert r.status_code in (202, 204), r.text
        wait_for(
            "the server stopped",
            lambda: not b.get(f"{hub}/hub/api/users/{user}", headers=headers).json().get("servers"),
        )
    return seconds, server_kib


def _by_process(hub_pid: int) -> dict[str, float]:
    """The idle enclave's RSS (MB) per process: the hub, its proxy, its culler."""
    found = {"hub": _rss_kib([hub_pid]) * 1024 / 1e6}
    for pid in _proctree.children(hub_pid):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        for name in (b"configurable-http-proxy", b"jupyterhub_idle_culler"):
            if name in argv:
                kib = _rss_kib([pid, *_proctree.tree(pid)])
                found[name.decode()] = round(kib * 1024 / 1e6, 1)
    found["hub"] = round(found["hub"], 1)
    return found


def _idle_enclave_pids(hub_pid: int) -> list[int]:
    """The hub and what it runs besides servers: its proxy and its culler (and their trees)."""
    pids = [hub_pid]
    for pid in _proctree.children(hub_pid):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"configurable-http-proxy" in argv or b"jupyterhub_idle_culler" in argv:
            pids += [pid, *_proctree.tree(pid)]
    return pids


def main() -> None:
    users = [f"bench-{i}" for i in range(N)]
    samples: list[float] = []
    phases: dict[str, list[float]] = {"signed_in": [], "lab_loaded": []}
    server_kib: list[int] = []
    with shared_state_dir() as root, tempfile.TemporaryDirectory() as scratch:
        audit = ServiceProcess(make_audit_env(Path(scratch) / "audit", sources=())).start()
        portal = PortalProcess(state=Path(scratch) / "portal")
        portal.state.mkdir()
        portal.start()
        proc = None
        try:
            dataset = root / "datasets" / "ds-16s"
            dataset.mkdir(parents=True)
            (dataset / "genus_abundance.tsv").write_text("participant\tBacteroides\nF-1\t0.5\n")
            doc = enclave_doc(
                ENCLAVE,
                members=[{"user": u, "role": "researcher"} for u in users],
                datasets=[
                    {"name": "m16s", "persistentVolume": "ds-16s", "mountPath": "/data/m16s"}
                ],
            )
            backend = start_sandboxed_backend(root=root, docs=[doc], portal=portal, audit=audit)
            proc = backend.proc
            wait_for("the hub answers", lambda: backend.hub_answers(ENCLAVE), timeout=180)
            hub = backend.status(ENCLAVE)["hub_url"]
            secrets = {u: enrol(portal, u) for u in users}
            time.sleep(5)  # let the freshly started hub, proxy and culler settle
            idle_kib = _rss_kib(_idle_enclave_pids(backend.status(ENCLAVE)["hub_pid"]))
            by_process = _by_process(backend.status(ENCLAVE)["hub_pid"])
            for user in users:
                seconds, kib = _sample(backend, hub, user, secrets[user], phases)
                samples.append(seconds)
                server_kib.append(kib)
                print(f"{user}: second factor -> idle kernel {seconds:.2f} s", file=sys.stderr)
        finally:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=120)
            portal.stop()
            audit.stop()
    median = statistics.median(samples)
    idle_mb = idle_kib * 1024 / 1e6
    print(
        json.dumps(
            {
                "benchmark": "workspace",
                "second_factor_to_idle_kernel_s_median": round(median, 3),
                "second_factor_to_idle_kernel_s": [round(s, 3) for s in samples],
                "phase_s_median": {k: round(statistics.median(v), 3) for k, v in phases.items()},
                "target_s": TARGET_S,
                "within_target_s": median <= TARGET_S,
                "idle_enclave_rss_mb": round(idle_mb, 1),
                "idle_enclave_rss_mb_by_process": by_process,
                "target_mb": TARGET_MB,
                "within_target_mb": idle_mb <= TARGET_MB,
                "server_with_idle_kernel_rss_mb": round(max(server_kib) * 1024 / 1e6, 1),
                "n": N,
                "unit": "s (times), MB = 10^6 bytes (memory)",
            }
        )
    )


if __name__ == "__main__":
    main()
