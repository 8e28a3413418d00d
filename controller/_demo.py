"""``enclave demo``: the embedded default on one machine, for trials and demos.

Lays out a state directory (keys, stores, tokens), starts the real audit service
and the real portal as two processes wired as in production (the portal records
every decision through the audit service, with a durable spool), registers one
demo enclave per tier with a demo researcher, and prints how to log in. It runs
until interrupted. Re-running it reuses the state directory: the audit log is
never wiped by the demo.

What it does not start yet: the per-enclave JupyterHub workspaces (the local
controller backend). The demo says so rather than pretending.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from policies import load_catalog

__all__ = ["DemoError", "run_demo"]

DEMO_USER = "demo.researcher@example.org"
DEMO_OFFICER = "demo.officer@example.org"
AUDIT_CLIENT = "audit-ui"
AUDIT_KEY_NAME = "demo.enclave.localhost/audit"
# The access-terminal allow-list of the strict tiers: this machine only.
LOCAL_NETWORKS = ("127.0.0.0/8", "::1/128")


class DemoError(Exception):
    """The demo cannot start; the message says what to do."""


@dataclass(frozen=True)
class DemoLayout:
    state: Path
    audit_port: int
    portal_port: int

    @property
    def audit_store(self) -> str:
        return f"sqlite:///{self.state / 'audit.db'}"

    @property
    def audit_url(self) -> str:
        return f"http://127.0.0.1:{self.audit_port}"

    @property
    def portal_url(self) -> str:
        # WebAuthn needs a secure context: localhost is one, 127.0.0.1 is not.
        return f"http://localhost:{self.portal_port}"

    def portal_env(self) -> dict[str, str]:
        return {
            "ENCLAVE_PORTAL_STORE": f"sqlite:///{self.state / 'identity.db'}",
            "ENCLAVE_PORTAL_KEY_FILE": str(self.state / "portal-keys"),
            "ENCLAVE_PORTAL_AUDIT_LOG": self.audit_url,
            "ENCLAVE_PORTAL_AUDIT_TOKEN_FILE": str(self.state / "portal-audit-token"),
            "ENCLAVE_PORTAL_AUDIT_SPOOL": str(self.state / "portal-audit-spool.db"),
        }


def _enclave() -> list[str]:
    script = Path(sys.executable).with_name("enclave")
    if not script.exists():
        raise DemoError(f"{script} is missing; run `make setup` first.")
    return [str(script)]


def _run(args: Sequence[str], *, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(
        [*_enclave(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    if r.returncode != 0:
        raise DemoError(f"`enclave {' '.join(args[:3])}` failed: {r.stderr.strip()[-400:]}")
    return r.stdout


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def prepare(layout: DemoLayout, *, say: object = print) -> str:
    """Create what is missing in the state directory; return the demo user's status line."""
    st = layout.state
    st.mkdir(parents=True, exist_ok=True)
    os.chmod(st, 0o700)
    emit = say if callable(say) else print
    if not (st / "audit.key").exists():
        emit("  audit: signing key")
        _run(["audit", "keygen", "--name", AUDIT_KEY_NAME, "--out", str(st / "audit.key")])
    if not (st / "portal-audit-token").exists():
        emit("  audit: intake token for the portal")
        token = (
            _run(
                [
                    "audit",
                    "token",
                    "issue",
                    "--tokens",
                    str(st / "audit-tokens.json"),
                    "--store",
                    layout.audit_store,
                    "--source",
                    "portal",
                    "--label",
                    "demo portal",
                ]
            )
            .strip()
            .splitlines()[-1]
            .strip()
        )
        _write_secret(st / "portal-audit-token", token)
    if not (st / "officer-token").exists():
        _write_secret(st / "officer-token", secrets.token_urlsafe(32))
    if not (st / "portal-keys").exists():
        emit("  portal: key ring")
        _run(["portal", "init-keys", str(st / "portal-keys")])
    # The officer UI is an OIDC client of the portal (DESIGN.md). Registered again when
    # the audit port changed; the portal's event waits in its spool until it runs.
    redirect = f"http://localhost:{layout.audit_port}/ui/oidc/callback"
    marker = st / "audit-oidc-redirect"
    if not (st / "audit-oidc-secret").exists() or (
        not marker.exists() or marker.read_text().strip() != redirect
    ):
        emit("  portal: OIDC client for the audit officer UI")
        reg = json.loads(
            _run(
                ["clients", "register", AUDIT_CLIENT, "--redirect-uri", redirect],
                env=layout.portal_env(),
            )
        )
        _write_secret(st / "audit-oidc-secret", reg["client_secret"])
        marker.write_text(redirect + "\n")
    return ""


def _start(
    args: list[str], *, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [*_enclave(), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ENCLAVE_LOG_FORMAT": "json", **(env or {})},
        start_new_session=True,
    )


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-600:]
            raise DemoError(
                f"{url} exited at start (exit {proc.returncode}); its log ends:\n{tail}"
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise DemoError(f"{url} did not become ready within {timeout:.0f} s; see {log}.")


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _enrol_demo_people(layout: DemoLayout) -> str:
    env = layout.portal_env()
    # A state directory from an earlier version: apply its schema steps (a no-op otherwise).
    _run(["portal", "migrate"], env=env)
    users = json.loads(_run(["users", "list", "--json"], env=env))
    status = next((u["status"] for u in users if u["username"] == DEMO_USER), None)
    if status == "active":
        return f"sign in as {DEMO_USER} with the password you chose earlier"
    if status not in (None, "invited"):
        return f"{DEMO_USER} is {status}; start afresh with a new ENCLAVE_DEMO_DIR"
    invite = json.loads(
        _run(["users", "invite", DEMO_USER, "--display-name", "Demo Researcher"], env=env)
    )
    for tier in load_catalog():
        args = [
            "enclaves",
            "register",
            f"demo-{tier.id}",
            "--tier",
            tier.id,
            "--display-name",
            f"Demo project ({tier.name})",
            "--member",
            f"{DEMO_USER}=researcher",
        ]
        for net in LOCAL_NETWORKS:
            args += ["--network", net]
        _run(args, env=env)
    officer_status = next((u["status"] for u in users if u["username"] == DEMO_OFFICER), None)
    if officer_status not in (None, "invited"):
        officer_line = f"The demo officer {DEMO_OFFICER} is {officer_status}"
    else:
        officer = json.loads(
            _run(
                [
                    *("users", "invite", DEMO_OFFICER),
                    *("--display-name", "Demo Officer", "--role", "officer"),
                ],
                env=env,
            )
        )
        officer_line = (
            f"An officer: the same with the officer invitation code "
            f"{officer['invitation_code']}\n    (for {DEMO_OFFICER})"
        )
    return (
        f"open {layout.portal_url}/invite, enter the invitation code {invite['invitation_code']}\n"
        f"    (single use, for {DEMO_USER}), choose a password of 12+ characters and enrol\n"
        "    an authenticator app (TOTP) or a security key, then sign in.\n"
        f"    {officer_line}, then open the audit officer UI below"
    )


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop the demo cleanly. Installed explicitly: a process
    started in the background by a non-interactive shell inherits SIGINT *ignored*, and
    Python then installs no handler of its own, so Ctrl-C (or a test's SIGINT) did
    nothing."""
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)


def run_demo(*, state: Path, audit_port: int, portal_port: int, once: bool = False) -> None:
    """Set up, start, print how to log in; serve until interrupted (or stop at once)."""
    layout = DemoLayout(state=state.resolve(), audit_port=audit_port, portal_port=portal_port)
    for port in (audit_port, portal_port):
        if not _port_free(port):
            raise DemoError(
                f"port {port} is in use; stop what uses it or set ENCLAVE_DEMO_AUDIT_PORT / "
                "ENCLAVE_DEMO_PORTAL_PORT"
            )
    _stop_on_signals()
    print(f"Enclave demo: state in {layout.state}", flush=True)
    prepare(layout)
    st = layout.state
    procs: list[subprocess.Popen[bytes]] = []
    try:
        audit = _start(
            [
                "audit",
                "serve",
                "--store",
                layout.audit_store,
                "--key",
                str(st / "audit.key"),
                "--tokens",
                str(st / "audit-tokens.json"),
                "--officer-token-file",
                str(st / "officer-token"),
                "--oidc-issuer",
                layout.portal_url,
                "--oidc-client-id",
                AUDIT_CLIENT,
                "--oidc-client-secret-file",
                str(st / "audit-oidc-secret"),
                "--oidc-redirect-uri",
                f"http://localhost:{audit_port}/ui/oidc/callback",
                # the demo admits officers with password + TOTP; production: nbdc-high
                "--oidc-min-tier",
                "nbdc-standard",
                "--port",
                str(audit_port),
                "--checkpoint-interval",
                "30",
                "--checkpoint-export",
                str(st / "latest-checkpoint"),
            ],
            log=st / "audit.log",
        )
        procs.append(audit)
        _wait_ready(layout.audit_url, audit, st / "audit.log")
        how = _enrol_demo_people(layout)
        admin = st / "portal-admin-token"
        if not admin.exists():
            _write_secret(admin, secrets.token_urlsafe(32))
        portal = _start(
            [
                "portal",
                "serve",
                "--issuer",
                layout.portal_url,
                "--port",
                str(portal_port),
                "--admin-token-file",
                str(admin),
            ],
            log=st / "portal.log",
            env=layout.portal_env(),
        )
        procs.append(portal)
        _wait_ready(f"http://127.0.0.1:{portal_port}", portal, st / "portal.log")
        print(
            "\nEnclave demo is running (embedded default, no cluster). Ctrl-C stops it.\n\n"
            f"Portal: {layout.portal_url}\n"
            f"Audit: http://localhost:{audit_port}/ui\n\n"
            f"  Researcher portal   {layout.portal_url}\n"
            f"    {how}.\n"
            f"    Demo enclaves, one per tier: "
            + ", ".join(f"demo-{t.id}" for t in load_catalog())
            + "\n"
            f"  Audit officer UI    http://localhost:{audit_port}/ui\n"
            '    "Sign in with the portal" as the demo officer (password + TOTP is enough\n'
            "    in the demo: --oidc-min-tier nbdc-standard; the production default is\n"
            "    nbdc-high, which needs a security key)\n"
            f"    bootstrap path: the officer token in the file {st / 'officer-token'}\n"
            f"  Verify the log      enclave audit verify --store {layout.audit_store}\n"
            f"  Tiers               enclave tiers show nbdc-high\n"
            f"  Logs                {st / 'portal.log'}, {st / 'audit.log'}\n\n"
            "  Not built yet: the per-enclave JupyterHub workspaces. Entering an enclave\n"
            "  ends at the portal's entry decision (recorded in the audit log).\n",
            flush=True,
        )
        if once:
            return
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = next(p for p in procs if p.poll() is not None)
        raise DemoError(f"a demo process exited (exit {dead.returncode}); see the logs in {st}")
    except KeyboardInterrupt:
        print("\nstopping the demo ...", flush=True)
    finally:
        _stop(procs)
