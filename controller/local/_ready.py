"""When a sandboxed single-user server listens: its Unix socket exists.

Called by ``SandboxSpawner.start``. The hub only learns that a server is up by
probing it over HTTP with a backoff that grows to 5 s between probes (JupyterHub's
``wait_for_http_server``), so a server that is ready between two probes waits for
the next one, up to 5 s. jupyter-server binds its socket at the end of its
initialisation, just before its event loop runs, so the spawner waits for the
socket (a cheap ``lstat`` every ``interval_s``) before it returns, and the hub's
first probe is answered. It never replaces the hub's own HTTP check.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = ["wait_for_socket"]


async def wait_for_socket(
    *, path: Path, running: Callable[[], bool], timeout_s: float, interval_s: float = 0.05
) -> bool:
    """True once ``path`` is a Unix socket; False as soon as ``running()`` is false or
    ``timeout_s`` has passed without it (the caller then leaves it to the hub's probe).

    ``path`` is never opened or followed: whatever the sandbox put there is only
    looked at with ``lstat``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                return True
        except FileNotFoundError:
            pass
        if not running() or loop.time() >= deadline:
            return False
        await asyncio.sleep(interval_s)
