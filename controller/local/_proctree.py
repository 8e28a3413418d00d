"""Process trees read from ``/proc`` (Linux), and stopping one with a deadline.

JupyterHub starts its proxy and its services (the idle culler) in sessions of their
own, so signalling a hub's process group does not reach them, and a hub that dies
without its cleanup leaves them running. The supervisor therefore remembers each
hub's whole tree and stops what is left of it; the backend also makes itself a
child subreaper, so whatever a dead hub orphans becomes its child, never init's.

A process is named by its pid *and* its start time (field 22 of ``/proc/PID/stat``),
so a pid reused by an unrelated process is never signalled.

A sandbox (bubblewrap with its own PID namespace) is stopped from inside out:
``sandboxed`` finds the processes its own PID 1 holds (the server it runs) and
``signal_exactly`` signals them alone. Signalling bubblewrap instead kills the
namespace's PID 1, and the kernel then SIGKILLs everything in it: no clean-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "alive",
    "become_subreaper",
    "children",
    "reap",
    "sandboxed",
    "signal_exactly",
    "terminate",
    "tree",
]

_PR_SET_CHILD_SUBREAPER = 36
_PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, start time, state) of ``pid``, or ``None`` once it is gone."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[19], fields[0]


def _table() -> dict[int, tuple[int, str, str]]:
    table = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                table[int(entry.name)] = stat
    return table


def tree(root: int) -> dict[int, str]:
    """Every live process below ``root`` (not ``root`` itself): pid -> start time."""
    table = _table()
    below: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        below.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    todo = list(below.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = table[pid][1]
            todo += below.get(pid, [])
    return found


def children(parent: int) -> dict[int, str]:
    """The direct children of ``parent``, zombies included: pid -> start time."""
    return {pid: started for pid, (ppid, started, _) in _table().items() if ppid == parent}


def alive(pid: int, started: str) -> bool:
    """``pid`` still runs and is the same process (not a zombie, not a reused pid)."""
    stat = _stat(pid)
    return stat is not None and stat[1] == started and stat[2] != "Z"


def _nspid(pid: int) -> list[int]:
    """``pid``'s number in each PID namespace it is in, outermost first (``NSpid``)."""
    try:
        lines = (_PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        if line.startswith("NSpid:"):
            return [int(n) for n in line.split()[1:]]
    return []


def sandboxed(root: int) -> dict[int, str]:
    """The processes below ``root`` whose parent is PID 1 of a PID namespace deeper than
    ``root``'s: what a sandbox's init holds (the command it runs, and any orphan of it
    that init adopted). pid -> start time; empty once the sandbox is gone."""
    depth = len(_nspid(root))
    table = _table()
    found: dict[int, str] = {}
    for pid, started in tree(root).items():
        parent = _nspid(table[pid][0]) if pid in table else []
        if len(parent) > depth and parent[-1] == 1:
            found[pid] = started
    return found


def signal_exactly(processes: Mapping[int, str], sig: int) -> None:
    """Send ``sig`` to each of ``processes`` still alive, and to nothing else (not its
    process group: a server's own helpers must outlive it until it has exited)."""
    for pid, started in processes.items():
        if alive(pid, started):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)  # it leads a group (a proxy, a culler): its children too
        else:
            os.kill(pid, sig)


def _wait(processes: Mapping[int, str], deadline: float) -> dict[int, str]:
    while True:
        left = {p: s for p, s in processes.items() if alive(p, s)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def terminate(processes: Mapping[int, str], *, grace_s: float) -> dict[int, str]:
    """SIGTERM what of ``processes`` still runs, SIGKILL what is left after ``grace_s``.

    Returns what still runs after that (nothing, unless a process is stuck in the
    kernel): the caller says so rather than assuming it is gone."""
    left = {p: s for p, s in processes.items() if alive(p, s)}
    for pid in left:
        _signal(pid, signal.SIGTERM)
    left = _wait(left, time.monotonic() + grace_s)
    for pid in left:
        _signal(pid, signal.SIGKILL)
    return _wait(left, time.monotonic() + 5.0)


def become_subreaper() -> None:
    """Orphans of this process's descendants are re-parented to it (PR_SET_CHILD_SUBREAPER)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap(pids: Mapping[int, str]) -> None:
    """Collect the exit status of adopted children that have exited (no zombie stays)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
