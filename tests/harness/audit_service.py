"""A real audit service for tests: a fresh store, key, tokens, and the server process.

``make_audit_env(dir)`` lays out everything ``enclave audit serve`` needs;
``ServiceProcess(env)`` runs ``python -m audit.service`` on a free port (stop and
start it again to simulate an outage; the store survives). Used by the audit service
integration tests, the officer UI e2e test and the HTTP benchmark.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from audit._events import Event, utc_now
from audit._note import generate_key, write_key_file
from audit.tokens import ENCLAVE_SOURCES, TokenStore
from tests.harness.common import free_port, wait_until

__all__ = [
    "SAMPLE_ENCLAVE",
    "AuditEnv",
    "ServiceProcess",
    "free_port",
    "make_audit_env",
    "sample_event",
]


@dataclass(frozen=True)
class AuditEnv:
    root: Path
    store_url: str
    db_path: Path
    key_path: Path
    tokens_path: Path
    officer_file: Path
    officer_token: str
    tokens: dict[str, str] = field(default_factory=dict)  # source -> intake token
    checkpoint_export: Path | None = None


def make_audit_env(root: Path, *, sources: tuple[str, ...] = ("portal", "hub")) -> AuditEnv:
    root.mkdir(parents=True, exist_ok=True)
    key = root / "audit.key"
    write_key_file(key, generate_key("audit.test.example/log"))
    store = TokenStore(path=root / "tokens.json")
    tokens = {
        s: store.issue(
            source=s, label="test", enclave=SAMPLE_ENCLAVE if s in ENCLAVE_SOURCES else None
        ).token
        for s in sources
    }
    officer_token = secrets.token_urlsafe(32)
    officer_file = root / "officer-token"
    officer_file.write_text(officer_token + "\n")
    officer_file.chmod(0o600)
    db = root / "audit.db"
    return AuditEnv(
        root=root,
        store_url=f"sqlite:///{db}",
        db_path=db,
        key_path=key,
        tokens_path=root / "tokens.json",
        officer_file=officer_file,
        officer_token=officer_token,
        tokens=tokens,
        checkpoint_export=root / "checkpoint.txt",
    )


#: the enclave of sample events, and of the hub and workspace tokens made here
SAMPLE_ENCLAVE = "gut-microbiome-2026"

# An action each source may send (audit._actions), with its details, for sample events.
_SAMPLE_ACTION: dict[str, tuple[str, str, dict[str, Any]]] = {
    "portal": ("auth.factor.failed", "failure", {"factor": "totp", "reason": "wrong code"}),
    "hub": ("session.started", "success", {"tier": "nbdc-high"}),
    "workspace": ("workspace.file.get", "success", {"path": "/data/microbiome-16s/a.tsv"}),
}


def sample_event(**over: Any) -> Event:
    """A valid event; ``over`` replaces fields (default: a failed TOTP at the portal;
    with another ``source`` and no ``action``, an action that source may send)."""
    action, outcome, details = _SAMPLE_ACTION[
        "portal" if "action" in over else over.get("source", "portal")
    ]
    base: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "time": utc_now(),
        "source": "portal",
        "actor": "r.tanaka@company-a.example",
        "action": action,
        "outcome": outcome,
        "enclave": SAMPLE_ENCLAVE,
        "client_ip": "192.0.2.10",
        "details": details,
    }
    base.update(over)
    return Event(**base)


class ServiceProcess:
    """``python -m audit.service`` as a child process; ``start``/``stop``/``kill``."""

    def __init__(
        self,
        env: AuditEnv,
        *,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        checkpoint_interval: float = 1.0,
    ) -> None:
        self.env = env
        self.port = port or free_port()
        self.extra_args = extra_args
        self.checkpoint_interval = checkpoint_interval
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = env.root / "service.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def browser_url(self) -> str:
        """Browse ``localhost`` (a secure context for Secure cookies, RECIPES.md)."""
        return f"http://localhost:{self.port}"

    def start(self, *, timeout: float = 30.0) -> ServiceProcess:
        args = [
            sys.executable,
            "-m",
            "audit.service",
            "--store",
            self.env.store_url,
            "--key",
            str(self.env.key_path),
            "--tokens",
            str(self.env.tokens_path),
            "--officer-token-file",
            str(self.env.officer_file),
            "--port",
            str(self.port),
            "--checkpoint-interval",
            str(self.checkpoint_interval),
            *(
                ("--checkpoint-export", str(self.env.checkpoint_export))
                if self.env.checkpoint_export
                else ()
            ),
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        log.close()
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"audit service exited with {proc.returncode}: "
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            return httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200

        try:
            wait_until(
                f"the audit service on {self.url}", answers, timeout, ignore=(httpx.HTTPError,)
            )
        except AssertionError:
            self.kill()
            raise
        return self

    def stop(self, *, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
