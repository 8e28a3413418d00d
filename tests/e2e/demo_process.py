"""``enclave demo`` as a newcomer runs it, for the end-to-end tests that follow it.

``running_demo(state)`` starts the demo on free ports with ``state`` as its state
directory, reads its output until it has printed how to log in, and yields what it
printed (``DemoRun``); on exit it stops the demo with Ctrl-C (SIGINT) and fails if
the demo did not exit 0. ``verify_log(store)`` runs ``enclave audit verify``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.audit_service import free_port

ENCLAVE = Path(sys.executable).with_name("enclave")
DEMO_ENCLAVES = ("demo-nbdc-standard", "demo-nbdc-high", "demo-tommo-standard", "demo-tommo-strong")
_READY = "the enclave's home kept in"  # the last line of what the demo prints once ready


@dataclass(frozen=True)
class DemoRun:
    """What a started demo printed, and where its state is."""

    state: Path
    out: str
    audit_port: int
    portal_port: int
    hubs: dict[str, str]  # enclave name -> the hub's public URL, as printed
    invitation_code: str  # the demo researcher's
    officer_invitation_code: str  # the demo officer's

    @property
    def portal(self) -> str:
        return f"http://localhost:{self.portal_port}"

    @property
    def audit(self) -> str:
        return f"http://localhost:{self.audit_port}"

    @property
    def store(self) -> str:
        return f"sqlite:///{self.state / 'audit.db'}"


@contextmanager
def running_demo(state: Path, *, timeout: float = 300) -> Iterator[DemoRun]:
    """Run ``enclave demo`` with ``state`` (its ancestors searchable by ``nobody``:
    ``tests.harness.local_hub.shared_state_dir``) until the block ends."""
    audit_port, portal_port = free_port(), free_port()
    proc = subprocess.Popen(
        [str(ENCLAVE), "demo", "--audit-port", str(audit_port), "--portal-port", str(portal_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "ENCLAVE_DEMO_DIR": str(state)},
    )
    out: list[str] = []
    drain: threading.Thread | None = None
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while not out or _READY not in out[-1]:
            assert time.monotonic() < deadline, "".join(out)
            line = proc.stdout.readline()
            assert line, "demo exited early:\n" + "".join(out)
            out.append(line)
        printed = "".join(out)
        len_out = len(out)
        # keep reading what it prints while the test runs: a full pipe would block it
        drain = threading.Thread(target=lambda: out.extend(proc.stdout or ()), daemon=True)
        drain.start()
        code = re.search(r"enter the invitation code (\S+)", printed)
        officer_code = re.search(r"the officer invitation code (\S+)", printed)
        assert code, printed
        assert officer_code, printed
        hubs = {}
        for name in DEMO_ENCLAVES:
            m = re.search(rf"^    {name} +(http://localhost:\d+)$", printed, re.M)
            assert m, printed
            hubs[name] = m.group(1)
        run = DemoRun(
            state=state,
            out=printed,
            audit_port=audit_port,
            portal_port=portal_port,
            hubs=hubs,
            invitation_code=code.group(1),
            officer_invitation_code=officer_code.group(1),
        )
        try:
            yield run
        except BaseException as e:  # what the demo printed meanwhile says why, often
            e.add_note("the demo printed, after its instructions:\n" + "".join(out[len_out:]))
            raise
    finally:
        if drain is None:  # it failed before it was ready: read the rest as it stops
            drain = threading.Thread(target=lambda: out.extend(proc.stdout or ()), daemon=True)
            drain.start()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        drain.join(timeout=10)
    assert proc.returncode == 0, "".join(out)


def verify_log(store: str) -> None:
    """``enclave audit verify --store STORE`` exits 0."""
    r = subprocess.run(
        [str(ENCLAVE), "audit", "verify", "--store", store],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
