"""A real JupyterHub (with configurable-http-proxy) whose spawner is ``SandboxSpawner``.

``LocalHub.start(...)`` writes a hub configuration into a directory of its own and
runs ``jupyterhub`` as a child process; the test drives it through the hub REST API
with a service token of its own (the authenticator is JupyterHub's
``DummyAuthenticator``: the portal-trusting one is not what these tests are about).
``Workspace.run(code)`` executes code in a real kernel of the user's server,
through the proxy and the kernel's websocket, and returns what it printed.

Everything here FAILS (never skips) when bubblewrap, socat, runuser or the proxy
is missing: ``make setup`` installs them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from controller.local import _proctree
from tests.harness.common import free_port, wait_until

__all__ = [
    "LocalHub",
    "Workspace",
    "cmdline",
    "descendants",
    "processes_naming",
    "require_sandbox_tools",
    "shared_state_dir",
]

REPO = Path(__file__).resolve().parents[2]
PROXY = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
SERVICE = "enclave-test"


def require_sandbox_tools() -> None:
    """Fail with what to install when a component of the sandbox is missing."""
    missing = [t for t in ("bwrap", "socat", "runuser") if shutil.which(t) is None]
    if missing:
        raise AssertionError(f"missing {', '.join(missing)}: run `make setup` (Debian packages)")
    if not PROXY.exists():
        raise AssertionError(f"missing {PROXY}: run `make setup` (npm packages)")


@contextmanager
def shared_state_dir() -> Iterator[Path]:
    """A state directory the sandbox's unprivileged host user can traverse (o+x).

    pytest's tmp_path lives under a 0700 directory that ``nobody`` cannot enter.
    """
    root = Path(tempfile.mkdtemp(prefix="enclave-local-", dir="/tmp"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def cmdline(pid: int) -> bytes:
    """A host process's argv (NUL-separated), empty once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def descendants(root: int) -> list[int]:
    """Every host process below ``root`` (through any PID namespace)."""
    parents: dict[int, int] = {}
    for pid in _pids():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        ppid = next(line for line in status.splitlines() if line.startswith("PPid:"))
        parents[pid] = int(ppid.split()[1])
    found = []
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor and ancestor != root:
            ancestor = parents.get(ancestor)
        if ancestor == root:
            found.append(pid)
    return found


def processes_naming(marker: str) -> list[int]:
    """Host processes whose argv contains ``marker`` (a path: runuser, bwrap, socat)."""
    return [pid for pid in _pids() if marker.encode() in cmdline(pid)]


def _wait(what: str, check: Any) -> Any:
    """Poll ``check()`` until it returns something truthy (a hub starts slowly)."""
    return wait_until(what, check, 180.0, interval=0.2, ignore=(httpx.HTTPError, OSError))


@dataclass
class LocalHub:
    """One enclave's hub: ``jupyterhub`` + ``configurable-http-proxy`` + ``SandboxSpawner``."""

    enclave: str
    root: Path
    hub_port: int
    proxy_port: int
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path
    users: set[str] = field(default_factory=set)
    orphans: dict[int, str] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        *,
        enclave: str,
        state_dir: Path,
        datasets: list[dict[str, str]],
        users: tuple[str, ...] = ("alice",),
        audit_intake_url: str = "",
    ) -> LocalHub:
        require_sandbox_tools()
        root = state_dir / "hubs" / enclave
        root.mkdir(parents=True)
        root.chmod(0o700)
        hub_port, proxy_port, api_port = free_port(), free_port(), free_port()
        token = secrets.token_hex(32)
        config = {
            "enclave": enclave,
            "state_dir": str(state_dir),
            "datasets": datasets,
            "hub_port": hub_port,
            "proxy_port": proxy_port,
            "api_port": api_port,
            "proxy": str(PROXY),
            "root": str(root),
            "token": token,
            "password": secrets.token_hex(16),
            "users": list(users),
            "audit_intake_url": audit_intake_url,
        }
        (root / "settings.json").write_text(json.dumps(config))
        (root / "settings.json").chmod(0o600)
        (root / "jupyterhub_config.py").write_text(_HUB_CONFIG)
        log_path = root / "hub.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(root / "jupyterhub_config.py")],
                cwd=root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        hub = cls(
            enclave=enclave,
            root=root,
            hub_port=hub_port,
            proxy_port=proxy_port,
            token=token,
            process=process,
            log_path=log_path,
            users=set(users),
        )
        try:
            _wait(f"hub of {enclave}", lambda: hub._alive() and hub.api("GET", "/").is_success)
        except AssertionError:
            hub.stop()
            raise
        return hub

    def _alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"jupyterhub exited:\n{self.log()}")
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"http://127.0.0.1:{self.hub_port}/hub/api{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
            **kwargs,
        )

    def spawn(self, user: str) -> float:
        """Ask for ``user``'s server; return the seconds until it was ready (measured)."""
        started = time.monotonic()
        response = self.api("POST", f"/users/{user}/server")
        assert response.status_code in {201, 202}, f"{response.text}\n{self.log()}"

        def ready() -> bool:
            self._alive()
            info = self.api("GET", f"/users/{user}").json()
            server = info.get("servers", {}).get("")
            if server is None and not info.get("pending"):
                raise AssertionError(f"spawn of {user} failed:\n{self.log()}")
            return bool(server and server.get("ready"))

        _wait(f"{user}'s server", ready)
        return time.monotonic() - started

    def stop_server(self, user: str) -> None:
        response = self.api("DELETE", f"/users/{user}/server")
        assert response.status_code in {202, 204}, response.text
        _wait(
            f"{user}'s server to stop",
            lambda: not self.api("GET", f"/users/{user}").json().get("servers"),
        )

    def crash(self) -> None:
        """SIGKILL the hub's process group: no clean-up. Its proxy (a session of its own)
        survives; :meth:`stop` stops it."""
        self.orphans.update(_proctree.tree(self.process.pid))
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM the hub, SIGKILL after 30 s; then stop what of its tree is left (its
        proxy and culler run in sessions of their own)."""
        tree = {**self.orphans, **_proctree.tree(self.process.pid)}
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        left = _proctree.terminate(tree, grace_s=5.0)
        assert not left, f"processes of the hub that would not exit: {sorted(left)}"


class Workspace:
    """A user's running server on a ``LocalHub`` and one real kernel in it."""

    def __init__(self, *, hub: LocalHub, user: str) -> None:
        self.hub = hub
        self.user = user
        self._kernel: str | None = None

    def _server(self, path: str) -> str:
        return f"{self.hub.url}/user/{self.user}/api{path}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.hub.token}"}

    def kernel(self) -> str:
        if self._kernel is None:
            response = httpx.post(
                self._server("/kernels"), headers=self._headers(), json={}, timeout=60
            )
            assert response.status_code == 201, response.text
            self._kernel = str(response.json()["id"])
        return self._kernel

    def forget_kernel(self) -> None:
        self._kernel = None

    def run(self, code: str, *, timeout: float = 120.0) -> str:
        """Execute ``code`` in the kernel; return its stdout, plus ``ename: evalue`` on error."""
        kernel = self.kernel()
        session = uuid.uuid4().hex
        url = self._server(f"/kernels/{kernel}/channels?session_id={session}")
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "enclave-test",
                "session": session,
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "channel": "shell",
            "buffers": [],
        }
        out: list[str] = []
        replied = idle = False
        with connect(
            url.replace("http://", "ws://"),
            additional_headers=self._headers(),
            open_timeout=60,
            max_size=None,
        ) as ws:
            ws.send(json.dumps(request))
            deadline = time.monotonic() + timeout
            while not (replied and idle):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no reply from the kernel; output so far: {out}"
                message = json.loads(ws.recv(timeout=remaining))
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = message["msg_type"]
                content = message["content"]
                if kind == "stream":
                    out.append(content["text"])
                elif kind == "error":
                    out.append(f"{content['ename']}: {content['evalue']}\n")
                elif kind == "execute_reply":
                    replied = True
                elif kind == "status" and content.get("execution_state") == "idle":
                    idle = True
        return "".join(out)


_HUB_CONFIG = """
# Written by tests/harness/local_hub.py: a real hub whose spawner is SandboxSpawner.
import json
from pathlib import Path

s = json.loads((Path(__file__).parent / "settings.json").read_text())
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = s["proxy_port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = s["hub_port"]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{s['api_port']}"
c.ConfigurableHTTPProxy.command = [s["proxy"]]
c.JupyterHub.db_url = f"sqlite:///{s['root']}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{s['root']}/cookie_secret"
c.JupyterHub.pid_file = f"{s['root']}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = s["password"]
c.Authenticator.allowed_users = set(s["users"])
c.JupyterHub.services = [{"name": "enclave-test", "api_token": s["token"]}]
c.JupyterHub.load_roles = [
    {
        "name": "enclave-test",
        "scopes": ["admin:users", "admin:servers", "access:servers"],
        "services": ["enclave-test"],
    }
]
c.JupyterHub.spawner_class = "controller.local.spawner.SandboxSpawner"
c.SandboxSpawner.enclave = s["enclave"]
c.SandboxSpawner.state_dir = s["state_dir"]
c.SandboxSpawner.datasets = s["datasets"]
c.SandboxSpawner.audit_intake_url = s["audit_intake_url"]
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.Spawner.default_url = "/lab"
"""
