"""Fixtures for the portal's end-to-end tests: real portal processes, real Chromium.

Minimal on purpose (the lead will fold them into tests/harness at merge):
  * ``PortalProcess`` starts ``python -m auth serve`` on a free port and waits,
    by polling /healthz with a deadline, until it answers.
  * ``chromium`` is Debian's browser driven by Playwright (never downloaded).
A missing Chromium FAILS the test with a message; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.harness.common import free_port

ADMIN_TOKEN = "e2e-admin-token-" + "y" * 24


@dataclass
class PortalProcess:
    state: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()

    @property
    def base(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> PortalProcess:
        keys = self.state / "keys"
        if not keys.exists():
            subprocess.run(
                [sys.executable, "-m", "auth", "init-keys", str(keys)],
                check=True,
                capture_output=True,
            )
        token_file = self.state / "admin-token"
        token_file.write_text(ADMIN_TOKEN)
        token_file.chmod(0o600)  # the portal refuses a group/world-readable token file
        log = open(self.state / f"portal-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "auth",
                "serve",
                "--store",
                f"sqlite:///{self.state / 'id.db'}",
                "--key-file",
                str(keys),
                "--audit-log",
                f"unsafe-jsonl:{self.state / 'audit.jsonl'}",
                "--issuer",
                self.base,
                "--rp-id",
                "localhost",
                "--port",
                str(self.port),
                "--admin-token-file",
                str(token_file),
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"portal exited: {(self.state / f'portal-{self.port}.log').read_text()}"
                )
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # poll interval, not a wait for an effect
        raise RuntimeError("portal did not answer /healthz within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def admin(self, method: str, path: str, **kw: object) -> httpx.Response:
        return httpx.request(
            method,
            self.base + path,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
            **kw,
        )  # type: ignore[arg-type]

    def audit_events(self) -> list[dict[str, object]]:
        import json

        path = self.state / "audit.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def portal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalProcess]:
    p = PortalProcess(state=tmp_path_factory.mktemp("portal")).start()
    yield p
    p.stop()


# The browser itself comes from the shared session fixture `chromium` in
# tests/harness/browser.py (one Playwright per process: a second sync Playwright
# in the same thread fails).
