"""Benchmark: from the second factor at the portal to a usable JupyterLab, locally.

Run with `make bench`, or `.venv/bin/python -P benchmarks/workspace.py [--n N]`.

The real audit service, the real portal and ``enclave controller run --local`` (its
default spawner: the audited bubblewrap sandbox) serve one enclave over a small
dataset. For each of N members (TOTP codes are single-use, so one member per
sample): sign in through the hub's OAuth login at the portal; the clock starts as
the TOTP code (the second factor) is submitted, and stops once a kernel of that
member's JupyterLab answered an execution and went idle (the sandboxed server
started through the hub's API, followed like the hub's spawn-pending page does, on
the hub's progress event stream, ``/lab`` loaded, a kernel started through the
proxied REST API, one cell run over its websocket). Each member's server is stopped
before the next sample. Outside the clock, the first sample also fetches the
scripts and style sheets ``/lab`` names (what a browser fetches before JupyterLab's
own lazy chunks) and reports their size, time and ``Cache-Control``.

Also reported: the memory of the idle enclave (the hub, which proxies and culls in
its own process locally; a configurable-http-proxy or idle culler beside it would be
counted too; no server), once before the first sample and once after the last
server stopped, per process: RSS (``VmRSS``) and PSS (from
``/proc/PID/smaps_rollup``: shared pages divided among the processes sharing them,
so it depends on what else runs on the machine); and the RSS of one member's server
with one idle kernel (runuser, bwrap, socat, the server, the kernel). The load
average before and after is reported: the development machine is shared. Targets:
<= 8 s and <= 150 MB (hub + proxy, RSS, the larger of the two measurements). Last
line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

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


def _status_kib(pid: int, field: str) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(x.split()[1]) for x in status.splitlines() if x.startswith(field)), 0)


def _pss_kib(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(x.split()[1]) for x in rollup.splitlines() if x.startswith("Pss:")), 0)


def _rss_kib(pids: list[int]) -> int:
    return sum(_status_kib(pid, "VmRSS:") for pid in pids)


def _mb(kib: int) -> float:
    return round(kib * 1024 / 1e6, 1)


def _start_lab(b: httpx.Client, hub: str, user: str) -> dict[str, str]:
    """Start ``user``'s server through the hub's API and wait as JupyterHub's
    spawn-pending page does (its progress event stream, until ``ready``), then load
    ``/lab`` (through the server's OAuth round trip). Returns the API headers."""
    xsrf = next(c.value for c in b.cookies.jar if c.name == "_xsrf")
    headers = {"X-XSRFToken": xsrf or ""}
    r = b.post(f"{hub}/hub/api/users/{user}/server", headers=headers)
    assert r.status_code in (201, 202), r.text
    if r.status_code == 202:  # still starting: follow the progress events
        url = f"{hub}/hub/api/users/{user}/server/progress"
        with b.stream("GET", url, headers=headers, timeout=300) as events:
            for line in events.iter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("ready"):
                    break
            else:
                raise AssertionError("the progress stream ended before the server was ready")
    lab = b.get(f"{hub}/user/{user}/lab")
    assert lab.status_code == 200, lab.text[:500]
    assert lab.url.path == f"/user/{user}/lab", lab.url
    return headers


_ASSET = re.compile(r"""<(?:script[^>]*\ssrc|link[^>]*\shref)=["']([^"']+)["']""")


def _lab_assets(b: httpx.Client, hub: str, user: str) -> dict[str, Any]:
    """What ``/lab`` names directly (scripts, style sheets, icons): count, bytes, time."""
    page = b.get(f"{hub}/user/{user}/lab")
    urls = sorted({u for u in _ASSET.findall(page.text) if not u.startswith(("http:", "https:"))})
    started = time.monotonic()
    total, cache = 0, set()
    for url in urls:
        r = b.get(httpx.URL(f"{hub}/user/{user}/lab").join(url))
        assert r.status_code == 200, (url, r.status_code)
        total += len(r.content)
        cache.add(r.headers.get("cache-control", "(none)"))
    return {
        "files": len(urls),
        "bytes": total,
        "s": round(time.monotonic() - started, 3),
        "cache_control": sorted(cache),
        "content_encoding": page.headers.get("content-encoding", "(none)"),
    }


def _sample(
    backend: Backend,
    hub: str,
    user: str,
    secret: str,
    phases: dict[str, list[float]],
    assets: dict[str, Any],
) -> tuple[float, int]:
    """Seconds from the second factor to an idle kernel; the server tree's RSS (KiB).
    ``phases`` gets the seconds from the second factor to the end of each step;
    ``assets``, when empty, gets what ``_lab_assets`` measures (outside the clock)."""
    started = [0.0]
    with browser() as b:
        r = sign_in_through_hub(
            b, hub, user, secret, on_second_factor=lambda: started.__setitem__(0, time.monotonic())
        )
        assert r.status_code == 200, r.text[:500]
        phases["signed_in"].append(time.monotonic() - started[0])
        headers = _start_lab(b, hub, user)
        phases["lab_loaded"].append(time.monotonic() - started[0])
        token = api_token(b, hub, user, headers)
        workspace = Workspace(hub=_Hub(hub, token), user=user)  # type: ignore[arg-type]
        workspace.run("pass")  # returns once the kernel replied and went idle
        seconds = time.monotonic() - started[0]
        if not assets:
            assets.update(_lab_assets(b, hub, user))
        hub_pid = backend.status(ENCLAVE)["hub_pid"]
        enclave = _idle_enclave_pids(hub_pid)
        server = [p for p in _proctree.tree(hub_pid) if p not in enclave]
        server_kib = _rss_kib(server)
        r = b.delete(f"{hub}/hub/api/users/{user}/server", headers=headers)
        assert r.status_code in (202, 204), r.text
        wait_for(
            "the server stopped",
            lambda: not b.get(f"{hub}/hub/api/users/{user}", headers=headers).json().get("servers"),
        )
    return seconds, server_kib


_PARTS = (b"configurable-http-proxy", b"jupyterhub_idle_culler")


def _idle_enclave_pids(hub_pid: int) -> list[int]:
    """The hub and what it runs besides servers: a proxy and a culler beside it, if any."""
    return [p for pids in _by_process(hub_pid).values() for p in pids]


def _by_process(hub_pid: int) -> dict[str, list[int]]:
    """The idle enclave's processes by part: the hub, its proxy, its culler."""
    found = {"hub": [hub_pid]}
    for pid in _proctree.children(hub_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        for name in _PARTS:
            if name in argv:
                found[name.decode()] = [pid, *_proctree.tree(pid)]
    return found


def _memory(hub_pid: int) -> dict[str, Any]:
    """RSS and PSS (MB) of each part of the idle enclave, and the totals."""
    parts = _by_process(hub_pid)
    rss = {k: _mb(_rss_kib(v)) for k, v in parts.items()}
    pss = {k: _mb(sum(_pss_kib(p) for p in v)) for k, v in parts.items()}
    return {
        "rss_mb_by_process": rss,
        "pss_mb_by_process": pss,
        "rss_mb": round(sum(rss.values()), 1),
        "pss_mb": round(sum(pss.values()), 1),
        "hub_and_proxy_rss_mb": round(rss["hub"] + rss.get("configurable-http-proxy", 0.0), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N, help="samples (members); default %(default)s")
    n = parser.parse_args().n
    users = [f"bench-{i}" for i in range(n)]
    samples: list[float] = []
    phases: dict[str, list[float]] = {"signed_in": [], "lab_loaded": []}
    server_kib: list[int] = []
    assets: dict[str, Any] = {}
    load_before = os.getloadavg()
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
            memory = _memory(backend.status(ENCLAVE)["hub_pid"])
            for user in users:
                seconds, kib = _sample(backend, hub, user, secrets[user], phases, assets)
                samples.append(seconds)
                server_kib.append(kib)
                print(f"{user}: second factor -> idle kernel {seconds:.2f} s", file=sys.stderr)
            after = _memory(backend.status(ENCLAVE)["hub_pid"])  # every server stopped
        finally:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=120)
            portal.stop()
            audit.stop()
    median = statistics.median(samples)
    print(
        json.dumps(
            {
                "benchmark": "workspace",
                "second_factor_to_idle_kernel_s_median": round(median, 3),
                "second_factor_to_idle_kernel_s_min": round(min(samples), 3),
                "second_factor_to_idle_kernel_s_max": round(max(samples), 3),
                "second_factor_to_idle_kernel_s": [round(s, 3) for s in samples],
                "phase_s_median": {k: round(statistics.median(v), 3) for k, v in phases.items()},
                "target_s": TARGET_S,
                "within_target_s": median <= TARGET_S,
                "idle_enclave_rss_mb": memory["rss_mb"],
                "idle_enclave_rss_mb_by_process": memory["rss_mb_by_process"],
                "idle_enclave_pss_mb": memory["pss_mb"],
                "idle_enclave_pss_mb_by_process": memory["pss_mb_by_process"],
                "hub_and_proxy_rss_mb": memory["hub_and_proxy_rss_mb"],
                "after_sessions": {
                    "idle_enclave_rss_mb": after["rss_mb"],
                    "idle_enclave_pss_mb": after["pss_mb"],
                    "hub_and_proxy_rss_mb": after["hub_and_proxy_rss_mb"],
                },
                "target_mb": TARGET_MB,
                "within_target_mb": max(
                    memory["hub_and_proxy_rss_mb"], after["hub_and_proxy_rss_mb"]
                )
                <= TARGET_MB,
                "server_with_idle_kernel_rss_mb": _mb(max(server_kib)),
                "lab_page_assets": assets,
                "load_average_before_after": [
                    [round(x, 2) for x in load_before],
                    [round(x, 2) for x in os.getloadavg()],
                ],
                "n": n,
                "unit": "s (times), MB = 10^6 bytes (memory)",
            }
        )
    )


if __name__ == "__main__":
    main()
