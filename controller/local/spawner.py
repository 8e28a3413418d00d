"""``SandboxSpawner``: JupyterHub starts each single-user server in its no-egress sandbox.

Configure the hub with ``c.JupyterHub.spawner_class =
"controller.local.spawner.AuditedSandboxSpawner"`` (the local backend's hubs; it
records start, stop and spawn failure with ``source=hub``) or ``SandboxSpawner``
(no records), and at least ``SandboxSpawner.enclave`` and ``SandboxSpawner.state_dir``.
The hub API (and the audit intake, when set) must listen on the host's 127.0.0.1;
the sandbox reaches them only through Unix sockets bridged by host ``socat``
processes this spawner owns, and the proxy reaches the server through one more host
``socat`` on 127.0.0.1. Every process it starts dies
with the hub (parent-death signal), so no sandbox outlives the hub that owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.spawner import Spawner
from jupyterhub.utils import random_port
from traitlets import Dict, Float, List, Unicode, default

from controller.local import _proctree
from controller.local._errors import SandboxConfigError
from controller.local._ready import wait_for_socket
from controller.local.sandbox import (
    INSIDE_SOCKETS,
    INSIDE_SPOOL,
    Bind,
    Forward,
    Sandbox,
    Staged,
    bwrap_argv,
    host_tcp_to_unix_argv,
    system_binds,
    unix_to_host_tcp_argv,
)
from controller.workspace._audit import read_secret_file
from controller.workspace.errors import SpecError
from controller.workspace.hub import AuditedSpawnerMixin

__all__ = [
    "AuditedSandboxSpawner",
    "SandboxSpawner",
    "ServerPaths",
    "check_traversable",
    "require_tools",
    "server_paths",
]

_PR_SET_PDEATHSIG = 1
_LOOPBACK_NAMES = {"127.0.0.1", "localhost"}
_JUPYTER_DEFAULT_PORT = 8888
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _die_with_hub() -> None:  # pragma: no cover - runs in the forked child
    """preexec_fn: the child gets SIGKILL when the hub (its parent) dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _loopback_port(url: str, *, what: str) -> int:
    """The port of a http URL on the host's loopback; anything else is refused."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in _LOOPBACK_NAMES or parts.port is None:
        raise SandboxConfigError(
            f"{what} must be http://127.0.0.1:PORT/... for the sandbox to reach it, not {url!r}."
        )
    return parts.port


def _unreachable(path: Path, *, uid: int) -> Path | None:
    """The first directory on the way to ``path`` that ``uid`` cannot search, if any."""
    for directory in reversed((path, *path.parents)):
        st = directory.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            return directory
    return None


def check_traversable(path: Path, *, uid: int) -> None:
    """The unprivileged user that starts bubblewrap must be able to reach ``path``."""
    blocked = _unreachable(path, uid=uid)
    if blocked is not None:
        raise SandboxConfigError(
            f"{blocked} is not searchable by the sandbox's host user; give it o+x "
            "or move the state directory."
        )


@dataclass(frozen=True, kw_only=True)
class ServerPaths:
    """Where one server's host-side directories live under the state directory."""

    home: Path  # homes/<enclave>: shared by the enclave's members, survives restarts
    sockets: Path  # sockets/<enclave>/u<user id>[-<server>]: emptied at each start
    stage: Path  # stage/<enclave>/u<user id>[-<server>]: mount points for staged paths
    spool: Path  # spools/<enclave>/u<user id>[-<server>]: the server's audit spool, kept


def server_paths(*, state_dir: str, enclave: str, user_id: int, server_name: str) -> ServerPaths:
    """The directories of one server; names come from the enclave id and the hub's user id.

    The user's name is never part of a path (portal identities are e-mail addresses);
    the enclave must be a DNS-1123 label, so it cannot leave the state directory.
    """
    if not state_dir or not Path(state_dir).is_absolute():
        raise SandboxConfigError(f"state_dir must be an absolute path, not {state_dir!r}.")
    if not _DNS_LABEL.match(enclave):
        raise SandboxConfigError(f"enclave must be a DNS-1123 label, not {enclave!r}.")
    server = f"u{user_id}"
    if server_name:
        server += "-" + hashlib.sha256(server_name.encode()).hexdigest()[:16]
    state = Path(state_dir)
    return ServerPaths(
        home=state / "homes" / enclave,
        sockets=state / "sockets" / enclave / server,
        stage=state / "stage" / enclave / server,
        spool=state / "spools" / enclave / server,
    )


def require_tools(*, paths: tuple[str, ...]) -> None:
    """Fail closed, with what to install, when a program the sandbox needs is missing."""
    missing = [p for p in paths if not os.access(p, os.X_OK)]
    if missing:
        raise SandboxConfigError(
            f"the sandbox needs {', '.join(missing)}, which is missing: install the "
            "Debian packages bubblewrap, socat and util-linux (make setup does)."
        )


def _signal_all(processes: list[subprocess.Popen[bytes]], signum: int) -> None:
    """Signal each still-running process's group (runuser, bwrap, socat and their children)."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)


def _dataset_binds(datasets: list[dict[str, Any]]) -> tuple[Bind, ...]:
    binds: list[Bind] = []
    for number, entry in enumerate(datasets):
        if set(entry) != {"source", "target"}:
            raise SandboxConfigError(
                f"dataset {number} must have exactly the keys source and target, "
                f"not {sorted(entry)}."
            )
        binds.append(Bind(source=Path(entry["source"]), target=PurePosixPath(entry["target"])))
    return tuple(binds)


class SandboxSpawner(Spawner):  # type: ignore[misc]
    """Start the single-user server in the hardened bubblewrap sandbox (see ``sandbox``)."""

    enclave = Unicode(
        help="The enclave (project id, DNS-1123) this hub serves; names its home and sockets."
    ).tag(config=True)
    state_dir = Unicode(
        help="Host directory holding homes/<enclave> and sockets/<enclave>/; every "
        "ancestor must be searchable (o+x) by run_as."
    ).tag(config=True)
    datasets = List(
        Dict(),
        help="Datasets as {'source': host path, 'target': absolute path inside}; always read-only.",
    ).tag(config=True)
    run_as = Unicode(
        "nobody",
        help="Unprivileged host user that starts bubblewrap when the hub runs as root "
        "(through runuser); ignored when the hub is not root.",
    ).tag(config=True)
    audit_intake_url = Unicode(
        "",
        help="The audit intake's URL on the host's loopback (http://127.0.0.1:PORT); "
        "empty: no path to the audit intake. Given to the server as ENCLAVE_AUDIT_INTAKE_URL.",
    ).tag(config=True)
    audit_token_file = Unicode(
        "",
        help="Host file (mode 0600, read by the hub) holding the enclave's workspace intake "
        "token (source=workspace, bound to the enclave). Empty: the server gets none. At "
        "each start it is copied, mode 0400 and owned by the sandbox's user, into that "
        "server's own sockets directory (no other sandbox sees it), and the server's "
        "EnclaveWorkspace.audit_token_file and audit_spool point inside the sandbox.",
    ).tag(config=True)
    readonly_paths = List(
        Unicode(),
        help="Host paths bound read-only at the same place inside (default: this Python "
        "environment and the interpreter it was made from). A path the unprivileged host "
        "user cannot reach is staged by root in a private mount namespace.",
    ).tag(config=True)
    home_target = Unicode(
        "/home/researcher", help="Where the enclave's home appears inside the sandbox."
    ).tag(config=True)
    stop_timeout = Float(
        10.0, help="Seconds between SIGTERM and SIGKILL when the server is stopped."
    ).tag(config=True)

    @default("readonly_paths")
    def _default_readonly_paths(self) -> list[str]:
        return sorted({sys.prefix, sys.base_prefix})

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return [str(Path(sys.prefix) / "bin" / "jupyterhub-singleuser")]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._proc: subprocess.Popen[bytes] | None = None
        self._bridges: list[subprocess.Popen[bytes]] = []

    # -- paths ---------------------------------------------------------------------------

    def _paths(self) -> ServerPaths:
        return server_paths(
            state_dir=self.state_dir,
            enclave=self.enclave,
            user_id=self.user.id,
            server_name=self.name,
        )

    def _readonly(
        self, *, run_as: str | None, uid: int, stage: Path
    ) -> tuple[tuple[Bind, ...], tuple[Staged, ...]]:
        binds: list[Bind] = []
        staged: list[Staged] = []
        shutil.rmtree(stage, ignore_errors=True)
        for number, text in enumerate(self.readonly_paths):
            path = Path(text)
            if run_as is None or _unreachable(path, uid=uid) is None:
                binds.append(Bind(source=path, target=PurePosixPath(text)))
                continue
            where = stage / str(number)
            where.mkdir(parents=True)
            where.chmod(0o755)  # whatever the umask: run_as binds it
            staged.append(Staged(source=path, stage=where))
            binds.append(Bind(source=where, target=PurePosixPath(text)))
        if staged:
            for directory in (stage, *stage.parents):
                if directory == Path(self.state_dir):
                    break
                directory.chmod(0o711)
        return tuple(binds), tuple(staged)

    def _host_user(self) -> tuple[str | None, int, int]:
        if os.geteuid() != 0:
            return None, os.geteuid(), os.getegid()
        entry = pwd.getpwnam(self.run_as)
        if entry.pw_uid == 0:
            raise SandboxConfigError("run_as must name an unprivileged host user, not root.")
        return self.run_as, entry.pw_uid, entry.pw_gid

    def _prepare_dirs(self, *, paths: ServerPaths, uid: int, gid: int) -> None:
        home, sockets, spool = paths.home, paths.sockets, paths.spool
        shared_dirs: tuple[Path, ...] = (home.parent, sockets.parent.parent, sockets.parent)
        if self.audit_token_file:
            shared_dirs += (spool.parent.parent, spool.parent)
        for shared in shared_dirs:
            shared.mkdir(parents=True, exist_ok=True)
            shared.chmod(0o711)
        check_traversable(home.parent, uid=uid)
        home.mkdir(exist_ok=True)
        shutil.rmtree(sockets, ignore_errors=True)
        sockets.mkdir()
        private_dirs = [home, sockets]
        if self.audit_token_file:
            spool.mkdir(exist_ok=True)  # kept: events not yet delivered survive a restart
            private_dirs.append(spool)
        for private in private_dirs:
            os.chown(private, uid, gid)
            private.chmod(0o700)

    def _hand_over_token(self, *, token: str, sockets: Path, uid: int, gid: int) -> PurePosixPath:
        """Write the workspace intake token where only this sandbox's server can read it."""
        fd = os.open(sockets / "audit_token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as f:
            os.fchown(f.fileno(), uid, gid)
            f.write(token + "\n")
        return INSIDE_SOCKETS / "audit_token"

    # -- Spawner API ---------------------------------------------------------------------

    def _start_process(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        preexec: Callable[[], None] = _die_with_hub
        return subprocess.Popen(argv, preexec_fn=preexec, start_new_session=True, **kwargs)

    async def start(self) -> tuple[str, int]:
        tools = (Sandbox.bwrap, Sandbox.socat, Sandbox.shell, Sandbox.unshare, Sandbox.runuser)
        require_tools(paths=tools)
        run_as, uid, gid = self._host_user()
        paths = self._paths()
        home, sockets, stage = paths.home, paths.sockets, paths.stage
        self.port = random_port()
        env = self.get_env()
        env["PATH"] = f"{sys.prefix}/bin:/usr/bin:/bin"
        # The server listens on its Unix socket only; jupyter-server refuses --sock with
        # any port but its default, so the URL it reads names that (unused) default.
        base_url = urlsplit(env["JUPYTERHUB_SERVICE_URL"]).path
        env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{_JUPYTER_DEFAULT_PORT}{base_url}"
        forwards = [("hub", _loopback_port(env["JUPYTERHUB_API_URL"], what="The hub API URL"))]
        if self.audit_intake_url:
            port = _loopback_port(self.audit_intake_url, what="audit_intake_url")
            forwards.append(("audit", port))
            env["ENCLAVE_AUDIT_INTAKE_URL"] = self.audit_intake_url
        token = ""
        if self.audit_token_file:
            if not self.audit_intake_url:
                raise SandboxConfigError("audit_token_file needs audit_intake_url.")
            try:
                token = read_secret_file(
                    Path(self.audit_token_file), what="the workspace intake token file"
                )
            except SpecError as e:
                raise SandboxConfigError(str(e)) from None
        # Every input checked above; only now is anything created on the host.
        self._prepare_dirs(paths=paths, uid=uid, gid=gid)
        readonly, staged = self._readonly(run_as=run_as, uid=uid, stage=stage)
        audit_args: tuple[str, ...] = ()
        if token:
            inside = self._hand_over_token(token=token, sockets=sockets, uid=uid, gid=gid)
            audit_args = (
                f"--EnclaveWorkspace.audit_token_file={inside}",
                f"--EnclaveWorkspace.audit_spool={INSIDE_SPOOL / 'audit-spool.db'}",
            )
        inside_socket = INSIDE_SOCKETS / "jupyter.sock"
        sandbox = Sandbox(
            run_as=run_as,
            hostname=f"enclave-{self.enclave}"[:63].rstrip("-"),  # a DNS label (server_paths)
            system=system_binds(),
            readonly=readonly,
            staged=staged,
            sockets_dir=sockets,
            spool_dir=paths.spool if token else None,
            home=Bind(source=home, target=PurePosixPath(self.home_target), writable=True),
            datasets=_dataset_binds(self.datasets),
            forwards=tuple(Forward(port=port, socket=f"{name}.sock") for name, port in forwards),
            command=(
                *self.cmd,
                *self.get_args(),
                *audit_args,
                f"--ServerApp.sock={inside_socket}",
                "--ServerApp.sock_mode=0600",
                f"--ServerApp.root_dir={self.home_target}",
            ),
        )
        try:
            for name, port in forwards:
                argv = unix_to_host_tcp_argv(socket=sockets / f"{name}.sock", port=port)
                self._bridges.append(self._start_process(argv))
            self._proc = self._start_process(bwrap_argv(sandbox=sandbox), env=env)
            server_bridge = host_tcp_to_unix_argv(port=self.port, socket=sockets / "jupyter.sock")
            self._bridges.append(self._start_process(server_bridge))
        except OSError:
            await self.stop(now=True)  # no bridge outlives a sandbox that never started
            raise
        proc = self._proc
        await wait_for_socket(  # the hub's first probe then finds it up (see _ready)
            path=sockets / "jupyter.sock",
            running=lambda: proc is not None and proc.poll() is None,
            timeout_s=self.http_timeout,
        )
        self.log.info(
            "Started %s's server for enclave %s in its sandbox (pid %s, port %s)",
            self.user.name,
            self.enclave,
            self._proc.pid if self._proc else None,
            self.port,
        )
        return ("127.0.0.1", self.port)

    async def poll(self) -> int | None:
        if self._proc is None:
            return 0
        code = self._proc.poll()
        if code is not None:
            return code
        if any(bridge.poll() is not None for bridge in self._bridges):
            return 1  # a path in or out is gone: the server is unusable
        return None

    async def stop(self, now: bool = False) -> None:
        """Stop the server first and its bridges last, so that what the server records as
        it stops (its final ``workspace.screen_output``) still has its way out.

        1. SIGTERM to the server inside the sandbox, and to it alone
           (``_proctree.sandboxed``): signalling bubblewrap would kill the sandbox's
           PID 1, and with it every process inside, by SIGKILL, before any clean-up.
           (No server inside yet: the sandbox's process group instead.)
        2. Wait up to ``stop_timeout`` for the sandbox to exit (it does when the server
           has), then SIGKILL what is left of it.
        3. Then the bridges: SIGTERM, SIGKILL after ``stop_timeout``.

        ``now`` (a start that failed half-way): SIGKILL everything at once.
        """
        sandbox = [self._proc] if self._proc is not None else []
        if now:
            await self._end([*sandbox, *self._bridges], signum=signal.SIGKILL)
        else:
            inside = _proctree.sandboxed(self._proc.pid) if self._proc is not None else {}
            _proctree.signal_exactly(inside, signal.SIGTERM)
            # no server inside yet (a start still under way): the sandbox's group is signalled
            await self._end(sandbox, signum=None if inside else signal.SIGTERM)
            await self._end(self._bridges, signum=signal.SIGTERM)
        self._proc = None
        self._bridges = []
        paths = self._paths()
        shutil.rmtree(paths.sockets, ignore_errors=True)
        shutil.rmtree(paths.stage, ignore_errors=True)

    async def _end(self, processes: list[subprocess.Popen[bytes]], *, signum: int | None) -> None:
        """Signal ``processes``' groups with ``signum`` (None: none), wait up to
        ``stop_timeout`` for them to exit, then SIGKILL their groups until they have."""
        if signum is not None:
            _signal_all(processes, signum)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_timeout
        while any(p.poll() is None for p in processes):
            if loop.time() > deadline:
                _signal_all(processes, signal.SIGKILL)
            await asyncio.sleep(0.05)


class AuditedSandboxSpawner(AuditedSpawnerMixin, SandboxSpawner):
    """The local backend's spawner: the sandbox, with the hub's start/stop/failure records."""
