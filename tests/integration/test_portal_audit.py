"""The portal's records reach the real audit log through audit's client.

The seam between two components, with both real: the ``enclave`` CLI of the
portal sends its events to (1) a real ``enclave audit serve`` process over HTTP
with a durable spool, and (2) an audit store appended in-process; afterwards the
log holds them and ``enclave audit verify`` passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from audit import Query, open_log
from tests.harness.audit_service import ServiceProcess, make_audit_env

ENCLAVE = Path(sys.executable).with_name("enclave")


def enclave(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENCLAVE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ENCLAVE_LOG_FORMAT": "json", **env},
    )


def portal_env(tmp_path: Path, audit_target: str, **extra: str) -> dict[str, str]:
    keys = tmp_path / "portal-keys"
    env = {
        "ENCLAVE_PORTAL_STORE": f"sqlite:///{tmp_path / 'identity.db'}",
        "ENCLAVE_PORTAL_KEY_FILE": str(keys),
        "ENCLAVE_PORTAL_AUDIT_LOG": audit_target,
        **extra,
    }
    if not keys.exists():
        r = enclave("portal", "init-keys", str(keys), env=env)
        assert r.returncode == 0, r.stderr
    return env


def actions_and_actors(store_url: str) -> list[tuple[str, str]]:
    log = open_log(store_url)
    try:
        events, _ = log.query(Query(source="portal"), cursor=None, limit=1000)
    finally:
        log.close()
    return sorted((e.event.action, e.event.actor) for e in events)


def test_portal_cli_records_into_the_audit_service_and_survives_an_outage(tmp_path: Path):
    audit = make_audit_env(tmp_path / "audit", sources=("portal",))
    token_file = tmp_path / "portal-audit-token"
    token_file.write_text(audit.tokens["portal"] + "\n")
    token_file.chmod(0o600)
    service = ServiceProcess(audit).start()
    try:
        env = portal_env(
            tmp_path,
            service.url,
            ENCLAVE_PORTAL_AUDIT_TOKEN_FILE=str(token_file),
            ENCLAVE_PORTAL_AUDIT_SPOOL=str(tmp_path / "portal-spool.db"),
        )
        r = enclave("users", "invite", "r.tanaka@company-a.example", env=env)
        assert r.returncode == 0, r.stderr
        service.stop()
        # The service is down: the record is durable in the spool, the command succeeds.
        r = enclave("users", "invite", "k.sato@tohoku.example", "--role", "pi", env=env)
        assert r.returncode == 0, r.stderr
        service.start()
        # Any later use of the client drains the spool, in order.
        r = enclave("users", "list", env=env)
        assert r.returncode == 0, r.stderr
    finally:
        service.stop()
    invited = [a for a in actions_and_actors(audit.store_url) if a[0] == "admin.user.invited"]
    assert len(invited) == 2
    r = enclave("audit", "verify", "--store", audit.store_url, env={})
    assert r.returncode == 0, r.stderr


def test_portal_cli_appends_to_a_local_store_and_the_log_verifies(tmp_path: Path):
    store_url = f"sqlite:///{tmp_path / 'audit.db'}"
    env = portal_env(tmp_path, store_url)
    for args in (
        ("users", "invite", "r.tanaka@company-a.example"),
        (
            "enclaves",
            "register",
            "gut-2026",
            "--tier",
            "nbdc-high",
            "--member",
            "r.tanaka@company-a.example=researcher",
            "--network",
            "192.0.2.0/24",
        ),
        ("users", "disable", "r.tanaka@company-a.example"),
    ):
        r = enclave(*args, env=env)
        assert r.returncode == 0, (args, r.stderr)
    actions = [a for a, _ in actions_and_actors(store_url)]
    assert sorted(actions) == sorted(
        ["admin.user.invited", "admin.enclave.registered", "admin.user.disabled"]
    )
    r = enclave("audit", "verify", "--store", store_url, env={})
    assert r.returncode == 0, r.stderr


def test_an_unreadable_token_file_stops_the_portal_cli_with_one_sentence(tmp_path: Path):
    env = portal_env(
        tmp_path,
        "http://127.0.0.1:9",
        ENCLAVE_PORTAL_AUDIT_TOKEN_FILE=str(tmp_path / "missing-token"),
        ENCLAVE_PORTAL_AUDIT_SPOOL=str(tmp_path / "spool.db"),
    )
    r = enclave("users", "list", env=env)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: Cannot read the audit token file")
    assert "Traceback" not in r.stderr


def test_a_mistyped_audit_target_is_refused_not_turned_into_a_file(tmp_path: Path):
    env = portal_env(tmp_path, f"sqlite:///{tmp_path / 'audit.db'}")
    env["ENCLAVE_PORTAL_AUDIT_LOG"] = "audit.example:8700"
    r = enclave("users", "list", env=env)
    assert r.returncode == 2
    assert "is not an audit service URL" in r.stderr
    assert not (Path.cwd() / "audit.example:8700").exists()
