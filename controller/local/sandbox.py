"""The argv of one single-user server's no-egress sandbox, built from typed inputs.

Pure functions: no process is started here and nothing is read but what
``system_binds`` is asked to look at. ``SandboxSpawner`` runs what they return.

The sandbox (bubblewrap, started by ``runuser`` as an unprivileged host user):

1. unshares every namespace (user, mount, PID, network, IPC, UTS, cgroup), so
   the server has its own PID 1 and a network namespace holding only its own
   loopback: no route, no interface, no DNS server it could reach;
2. forbids further user namespaces inside (``--disable-userns``), drops every
   capability and runs as uid/gid 65534, so nothing inside can add a route,
   bring up an interface or ``setns`` into another namespace;
3. dies with its parent and runs in a new session (no TIOCSTI onto a host tty);
4. sees a read-only root made only of the system directories (``/usr``,
   ``/etc`` and the usr-merge links), the Python environment, the datasets
   (read-only) and its enclave's home (writable), plus a private ``/tmp`` whose
   ``socks`` directory is bound to a host directory holding the Unix sockets that
   are its only paths out, and, when given, whose ``spool`` directory is bound to
   the server's own (writable) audit spool directory;
5. runs a short shell script that starts one ``socat`` per forward (TCP on the
   sandbox's 127.0.0.1 to a Unix socket in ``/tmp/socks``) and then execs the
   server command.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from controller.local._errors import SandboxConfigError

__all__ = [
    "INSIDE_SOCKETS",
    "INSIDE_SPOOL",
    "Bind",
    "Forward",
    "Sandbox",
    "Staged",
    "Symlink",
    "bwrap_argv",
    "host_tcp_to_unix_argv",
    "system_binds",
    "unix_to_host_tcp_argv",
]

#: The sandbox's private /tmp (a tmpfs of its own, not the host's /tmp).
INSIDE_TMP = PurePosixPath("/tmp")  # noqa: S108
#: Where the host's socket directory appears inside the sandbox (under the private /tmp).
INSIDE_SOCKETS = INSIDE_TMP / "socks"
#: Where the server's own audit spool directory appears (under the private /tmp).
INSIDE_SPOOL = INSIDE_TMP / "spool"

#: Host directories a Python server needs; nothing else of the host is visible.
_SYSTEM_DIRS = ("/usr", "/etc")
#: Top-level entries that are directories on older systems and links into /usr on usr-merged ones.
_USR_MERGE = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SOCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,40}\.sock$")


def _absolute(path: PurePosixPath | Path, *, what: str) -> None:
    text = str(path)
    if not PurePosixPath(text).is_absolute() or ".." in PurePosixPath(text).parts:
        raise SandboxConfigError(f"{what} must be an absolute path without '..', not {text!r}.")


def _port(port: int, *, what: str) -> None:
    if not 1 <= port <= 65535:
        raise SandboxConfigError(f"{what} must be a TCP port between 1 and 65535, not {port}.")


@dataclass(frozen=True, kw_only=True)
class Bind:
    """A host path made visible inside the sandbox; read-only unless ``writable``."""

    source: Path
    target: PurePosixPath
    writable: bool = False

    def __post_init__(self) -> None:
        _absolute(self.source, what="a bind source")
        _absolute(self.target, what="a bind target")
        if self.target == PurePosixPath("/"):
            raise SandboxConfigError("nothing may be bound over the sandbox's root '/'.")


@dataclass(frozen=True, kw_only=True)
class Symlink:
    """A symbolic link created inside the sandbox (``/bin -> usr/bin``)."""

    target: str
    path: PurePosixPath

    def __post_init__(self) -> None:
        _absolute(self.path, what="a link path")


@dataclass(frozen=True, kw_only=True)
class Staged:
    """A host path the unprivileged user cannot reach (``/root/.pyenv/...``), shown to it
    at ``stage`` by root in a mount namespace private to this one sandbox launch."""

    source: Path
    stage: Path

    def __post_init__(self) -> None:
        _absolute(self.source, what="a staged source")
        _absolute(self.stage, what="a stage directory")


@dataclass(frozen=True, kw_only=True)
class Forward:
    """Inside the sandbox, TCP ``127.0.0.1:port`` is carried to ``/tmp/socks/<socket>``."""

    port: int
    socket: str

    def __post_init__(self) -> None:
        _port(self.port, what="a forwarded port")
        if not _SOCKET_NAME.match(self.socket):
            raise SandboxConfigError(
                f"a forward's socket must be a plain name ending in .sock, not {self.socket!r}."
            )


@dataclass(frozen=True, kw_only=True)
class Sandbox:
    """Everything one single-user server's sandbox is made of.

    ``run_as`` is the unprivileged host user that starts bubblewrap (through
    ``runuser``) when the caller is root; ``None`` starts it as the caller, who
    must then be unprivileged already.
    """

    run_as: str | None
    hostname: str
    system: tuple[Bind | Symlink, ...]
    readonly: tuple[Bind, ...]
    sockets_dir: Path
    home: Bind
    datasets: tuple[Bind, ...]
    forwards: tuple[Forward, ...]
    command: tuple[str, ...]
    staged: tuple[Staged, ...] = ()
    spool_dir: Path | None = None
    uid: int = 65534
    gid: int = 65534
    bwrap: str = "/usr/bin/bwrap"
    runuser: str = "/usr/sbin/runuser"
    unshare: str = "/usr/bin/unshare"
    socat: str = "/usr/bin/socat"
    shell: str = "/bin/sh"

    def __post_init__(self) -> None:
        if not _HOSTNAME.match(self.hostname):
            raise SandboxConfigError(
                f"the sandbox hostname must be a DNS label, not {self.hostname!r}."
            )
        if self.uid == 0 or self.gid == 0:
            raise SandboxConfigError("the sandbox must not run as uid or gid 0.")
        if self.run_as is not None and self.run_as in {"root", "0", ""}:
            raise SandboxConfigError("run_as must name an unprivileged host user, not root.")
        if self.staged and self.run_as is None:
            raise SandboxConfigError("staging paths needs root and an unprivileged run_as user.")
        if not self.command:
            raise SandboxConfigError("the sandbox needs a command to run.")
        _absolute(self.sockets_dir, what="the sockets directory")
        if self.spool_dir is not None:
            _absolute(self.spool_dir, what="the spool directory")
        if not self.home.writable:
            raise SandboxConfigError("the enclave's home must be a writable bind.")
        for dataset in self.datasets:
            if dataset.writable:
                raise SandboxConfigError(
                    f"dataset {dataset.target} must be bound read-only, never writable."
                )
        # Step 4: only the home is writable; a dataset or extra path that lands on the
        # home, the sockets or /tmp would shadow them (or be shadowed) silently.
        # A read-only path may live under /tmp (it is bound over the private tmpfs),
        # but never be /tmp itself or reach the sockets directory.
        reserved = (self.home.target, INSIDE_TMP, PurePosixPath("/proc"), PurePosixPath("/dev"))
        for bind in (*self.readonly, *self.datasets):
            for taken in reserved:
                under_tmp = taken == INSIDE_TMP and bind in self.readonly
                if bind.target == taken or (taken in bind.target.parents and not under_tmp):
                    raise SandboxConfigError(
                        f"{bind.target} overlaps {taken}, which the sandbox reserves."
                    )
            for taken in (INSIDE_SOCKETS, INSIDE_SPOOL):
                if bind.target == taken or taken in bind.target.parents:
                    raise SandboxConfigError(
                        f"{bind.target} overlaps {taken}, which the sandbox reserves."
                    )
        ports = [f.port for f in self.forwards]
        names = [f.socket for f in self.forwards]
        if len(set(ports)) != len(ports) or len(set(names)) != len(names):
            raise SandboxConfigError("each forward needs its own port and its own socket.")


def system_binds(*, root: Path = Path("/")) -> tuple[Bind | Symlink, ...]:
    """The host's system directories, read-only, with its usr-merge links as links."""
    found: list[Bind | Symlink] = [
        Bind(source=root / d.lstrip("/"), target=PurePosixPath(d)) for d in _SYSTEM_DIRS
    ]
    for entry in _USR_MERGE:
        host = root / entry.lstrip("/")
        if host.is_symlink():
            found.append(Symlink(target=str(host.readlink()), path=PurePosixPath(entry)))
        elif host.is_dir():
            found.append(Bind(source=host, target=PurePosixPath(entry)))
    return tuple(found)


def _bind_args(bind: Bind) -> list[str]:
    return ["--bind" if bind.writable else "--ro-bind", str(bind.source), str(bind.target)]


def _inside_script(sandbox: Sandbox) -> str:
    """Step 5: start each forward, then become the server (``exec "$@"``)."""
    lines = ["set -eu"]
    for forward in sandbox.forwards:
        listen = f"TCP-LISTEN:{forward.port},bind=127.0.0.1,fork,reuseaddr"
        connect = f"UNIX-CONNECT:{INSIDE_SOCKETS / forward.socket}"
        lines.append(f"{shlex.quote(sandbox.socat)} {listen} {connect} &")
    lines.append('exec "$@"')
    return "\n".join(lines)


def bwrap_argv(*, sandbox: Sandbox) -> list[str]:
    """The whole argv that starts ``sandbox.command`` inside the sandbox (steps 1-5)."""
    argv: list[str] = []
    if sandbox.staged:
        # 0: root binds what run_as cannot reach onto stage directories, in a mount
        # namespace of this launch only (the host's mounts are untouched).
        script = ["set -eu"]
        script += [
            f"mount --bind {shlex.quote(str(s.source))} {shlex.quote(str(s.stage))}"
            for s in sandbox.staged
        ]
        script.append('exec "$@"')
        argv += [sandbox.unshare, "--mount", "--propagation", "private", "--"]
        argv += [sandbox.shell, "-c", "\n".join(script), "enclave-stage"]
    if sandbox.run_as is not None:
        argv += [sandbox.runuser, "-u", sandbox.run_as, "--"]
    argv += [
        sandbox.bwrap,
        # 1-3: every namespace, no capability, no nested user namespace, uid 65534.
        "--unshare-all",
        "--unshare-user",  # --unshare-all only tries; --disable-userns needs it for certain
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(sandbox.uid),
        "--gid",
        str(sandbox.gid),
        "--hostname",
        sandbox.hostname,
    ]
    # 4: a root made only of what is listed here, then made read-only.
    for entry in sandbox.system:
        if isinstance(entry, Symlink):
            argv += ["--symlink", entry.target, str(entry.path)]
        else:
            argv += _bind_args(entry)
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", str(INSIDE_TMP)]
    # after the private /tmp: a path that lives under the host's /tmp (a checkout or a
    # virtualenv there) is bound on top of it instead of being hidden by it
    for bind in sandbox.readonly:
        argv += _bind_args(bind)
    argv += ["--bind", str(sandbox.sockets_dir), str(INSIDE_SOCKETS)]
    if sandbox.spool_dir is not None:
        argv += ["--bind", str(sandbox.spool_dir), str(INSIDE_SPOOL)]
    argv += _bind_args(sandbox.home)
    for dataset in sandbox.datasets:
        argv += _bind_args(dataset)
    argv += ["--remount-ro", "/"]
    home = str(sandbox.home.target)
    argv += ["--chdir", home, "--setenv", "HOME", home]
    # 5: the forwards, then the server.
    argv += ["--", sandbox.shell, "-c", _inside_script(sandbox), "enclave-sandbox"]
    argv += list(sandbox.command)
    return argv


def host_tcp_to_unix_argv(*, socat: str = "/usr/bin/socat", port: int, socket: Path) -> list[str]:
    """Host side: the proxy reaches the server's Unix socket at TCP 127.0.0.1:``port``."""
    _port(port, what="the server's host port")
    _absolute(socket, what="the server's socket")
    return [
        socat,
        f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
        f"UNIX-CONNECT:{socket}",
    ]


def unix_to_host_tcp_argv(
    *, socat: str = "/usr/bin/socat", socket: Path, port: int, mode: int = 0o666
) -> list[str]:
    """Host side: a Unix socket for the sandbox, carried to TCP 127.0.0.1:``port`` on the host.

    ``mode`` 0666 lets the sandbox's uid 65534 connect; the socket lives in that
    sandbox's own sockets directory, which nothing else is given.
    """
    _port(port, what="a forwarded host port")
    _absolute(socket, what="a forwarded socket")
    return [
        socat,
        f"UNIX-LISTEN:{socket},fork,unlink-early,mode={mode:o}",
        f"TCP:127.0.0.1:{port}",
    ]
