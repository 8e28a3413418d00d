"""The local backend's files and host paths: its state directory's secrets and
atomically written files, its ports, the tier overlay's copy, and what a sandboxed
single-user server must see of the host.

Called by the reconciler (``_backend``) only. Secrets are written mode 0600 from the
start (never created readable, then narrowed); a file another process reads is
replaced atomically, so it is never seen half-written.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import sys
from pathlib import Path

from policies import Catalog, PolicyError, load_catalog

from ._errors import SandboxConfigError
from .errors import SetupError

__all__ = [
    "PROXY_NODE_FLAGS",
    "enclave_script",
    "free_port",
    "load_overlay",
    "prepare_sandboxes",
    "proxy_command",
    "server_readonly_paths",
    "write_atomic",
    "write_secret",
]

#: V8 flags for each hub's configurable-http-proxy (``--proxy
#: configurable-http-proxy``; by default a hub proxies in its own process). Lite mode (no optimising
#: compiler; JavaScript semantics unchanged) measured here: idle RSS 61 -> 53 MB,
#: after 510 MB proxied 99 -> 74 MB, for about a third more proxy CPU per byte
#: (benchmarks/README.md). No heap cap: a proxy that runs out of heap drops every
#: workspace's connections.
PROXY_NODE_FLAGS = ("--lite-mode",)


def proxy_command(repo: Path) -> tuple[str, ...]:
    """configurable-http-proxy from ``repo``'s node_modules, run by ``node`` with
    :data:`PROXY_NODE_FLAGS` (absolute paths: ``LocalBackend.open`` checks they exist)."""
    node = shutil.which("node") or "/usr/bin/node"
    script = repo / "node_modules" / "configurable-http-proxy" / "bin" / "configurable-http-proxy"
    return (str(Path(node).resolve()), *PROXY_NODE_FLAGS, str(script))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_secret(path: Path, value: str) -> None:
    """``value`` and a newline into ``path``, created mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def write_atomic(path: Path, text: str, *, mode: int = 0o644) -> None:
    """``text`` into ``path`` through a synced temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def enclave_script(python: str) -> str:
    """The ``enclave`` command beside ``python``; ``SetupError`` when it is missing."""
    script = Path(python).with_name("enclave")
    if not script.exists():
        raise SetupError(f"{script} is missing; install the project (make setup)")
    return str(script)


def prepare_sandboxes(root: Path) -> None:
    """``sandboxes/`` (0711), refused when the sandbox's host user cannot reach it."""
    from .spawner import SandboxSpawner, check_traversable

    root.mkdir(exist_ok=True)
    root.chmod(0o711)
    if os.geteuid() == 0:
        try:
            uid = pwd.getpwnam(SandboxSpawner.run_as.default_value).pw_uid
            check_traversable(root, uid=uid)
        except (KeyError, SandboxConfigError) as e:
            raise SetupError(f"the workspaces' sandbox cannot run here: {e}") from None


def load_overlay(overlay: Path, *, copy: Path | None) -> Catalog:
    """The catalog with the operator's ``overlay``, checked, then copied to ``copy``
    (readable by the sandboxes) and loaded again from there: what the hubs use is
    exactly what the workspaces will read. A bad overlay: ``SetupError``, nothing copied."""
    assert copy is not None
    try:
        load_catalog(overlay=overlay)
        text = overlay.read_bytes()
    except (OSError, PolicyError) as e:
        raise SetupError(f"the tier overlay cannot be used: {e}") from None
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.parent.chmod(0o755)
    write_atomic(copy, text.decode("utf-8"), mode=0o644)
    copy.chmod(0o644)  # whatever the umask: the sandbox's user reads it
    try:
        return load_catalog(overlay=copy)
    except PolicyError as e:  # the file changed between the two reads
        copy.unlink()
        raise SetupError(f"the tier overlay changed while it was read; start again ({e})") from None


def server_readonly_paths(python: str) -> tuple[Path, ...]:
    """What a single-user server runs from: the Python environment (and the interpreter
    it was made from) and this project's packages, wherever they are installed."""
    import audit
    import auth
    import controller
    import policies

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(python).parent.parent}
    for package in (policies, audit, auth, controller):
        assert package.__file__ is not None
        paths.add(Path(package.__file__).resolve().parent)
    return tuple(sorted(p for p in paths if not any(q in p.parents for q in paths)))
