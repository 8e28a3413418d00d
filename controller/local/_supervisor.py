"""One supervised child process: started, restarted with backoff when it dies, stopped cleanly.

Level-triggered: the backend calls :meth:`Child.tend` on every pass; it starts the
process when it should run and does not, waiting out the backoff after a death.
Nothing here blocks except stopping (:meth:`Child.stop`, and :meth:`Child.tend` after
a death), which waits (bounded) for the exit.

A hub's proxy and idle culler run in sessions of their own (JupyterHub starts them
so), out of reach of the hub's process group. So the child's whole process tree is
remembered at each :meth:`Child.tend` and at :meth:`Child.stop`, and whatever of it
outlives the hub is stopped too: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _proctree

__all__ = ["Backoff", "Child"]


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Restart delays: ``first_s``, doubling to ``max_s``; reset after ``healthy_s`` of running."""

    first_s: float = 1.0
    max_s: float = 60.0
    healthy_s: float = 60.0

    def next(self, current: float) -> float:
        return min(self.max_s, current * 2) if current else self.first_s


@dataclass(kw_only=True)
class Child:
    """A process run as ``argv`` in ``cwd`` (its own session), output appended to ``log``."""

    name: str
    argv: Sequence[str]
    cwd: Path
    log: Path
    env: Mapping[str, str]
    say: Callable[[str], None]
    backoff: Backoff = field(default_factory=Backoff)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay_s: float = 0.0
    not_before: float = 0.0
    restarts: int = 0
    tree: dict[int, str] = field(default_factory=dict)
    leftover_grace_s: float = 5.0

    def _start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    def tend(self) -> None:
        """Start the process if it is not running and its backoff has passed."""
        now = time.monotonic()
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                if self.delay_s and now - self.started_at >= self.backoff.healthy_s:
                    self.delay_s = 0.0
                self.tree = _proctree.tree(self.proc.pid)
                return
            self._reap_group()
            self._stop_leftovers(self.tree)
            self.proc = None
            self.delay_s = self.backoff.next(self.delay_s)
            self.not_before = now + self.delay_s
            self.restarts += 1
            self.say(
                f"{self.name} exited with code {code}; restarting in {self.delay_s:.0f} s "
                f"(see {self.log})"
            )
            return
        if now >= self.not_before:
            self._start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _reap_group(self) -> None:
        """Kill what the child left behind in its session (its proxy, its servers)."""
        if self.proc is not None:
            _kill_group(self.proc.pid, signal.SIGKILL)

    def _stop_leftovers(self, tree: dict[int, str]) -> None:
        """Stop what of the child's tree outlived it (its proxy, its culler, ...)."""
        self.tree = {}
        stuck = _proctree.terminate(tree, grace_s=self.leftover_grace_s)
        if stuck:
            self.say(f"{self.name}: processes {sorted(stuck)} did not exit after SIGKILL")

    def stop(self, *, grace_s: float = 20.0) -> None:
        """SIGTERM the child's process group, wait up to ``grace_s``, then SIGKILL it;
        then stop what is left of its process tree (SIGTERM, SIGKILL after a grace)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        tree = {**self.tree, **_proctree.tree(proc.pid)}
        if proc.poll() is None:
            _kill_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        self._stop_leftovers(tree)


def _kill_group(pgid: int, sig: int) -> None:
    """Signal the child's session (it leads it: ``start_new_session``); gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
