"""Issue #12, items 3, 4, 5, 10: a workspace token (code the researcher wrote), or anyone
who can reach the service, must not fill its disk or memory, flood the log through the
sign-in callback, watch officers through /metrics, nor make officer actions go unrecorded.

Each test is named for the attack it stops."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.testclient import TestClient

from audit.log import AuditLog
from audit.server import create_app
from audit.service import ServiceSettings
from audit.service._oidc import OidcConfig
from audit.tokens import TokenStore
from tests.harness.audit_service import AuditEnv, sample_event

from .conftest import bearer, client_from, make_client, scrape

ENCLAVE = "gut-microbiome-2026"


def _audit_events(log: AuditLog) -> list[dict[str, Any]]:
    rows = log.store.entries(0, log.sequenced())
    return [orjson.loads(r[-1]) for r in rows if r[4] == "audit"]


def _rejections(log: AuditLog, state: Any) -> dict[str, int]:
    """Write the pending refusal summary now and read it back by reason."""
    state.report_rejections_sync()
    out: dict[str, int] = {}
    for e in _audit_events(log):
        if e["action"] == "audit.intake.rejected":
            r = e["details"]["reason"]
            out[r] = out.get(r, 0) + e["details"]["count"]
    return out


def _workspace_token(env: AuditEnv) -> str:
    return (
        TokenStore(path=env.tokens_path)
        .issue(source="workspace", label="researcher code", enclave=ENCLAVE)
        .token
    )


def _file_events(n: int, *, path_len: int = 20) -> list[dict[str, Any]]:
    return [
        sample_event(
            source="workspace",
            actor="r.tanaka@company-a.example",
            action="workspace.file.get",
            outcome="success",
            enclave=ENCLAVE,
            details={"path": "/data/" + "p" * path_len},
        ).to_dict()
        for _ in range(n)
    ]


def _post(client: TestClient, token: str, events: list[dict[str, Any]]) -> Any:
    return client.post("/v1/events", json={"events": events}, headers=bearer(token))


def _ui_session(c: TestClient, env: AuditEnv) -> str:
    form = c.get("/ui/login")
    csrf = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    r = c.post(
        "/ui/login",
        data={"token": env.officer_token, "login_csrf": csrf.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = c.get("/ui/checkpoints")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    return token.group(1)


# -- item 3: disk and memory -------------------------------------------------------------


def test_a_workspace_token_cannot_append_past_its_events_per_minute(
    env: AuditEnv, log: AuditLog
) -> None:
    ws = _workspace_token(env)
    with make_client(env, log, checkpoint_interval_seconds=0, token_events_per_minute=150) as c:
        assert _post(c, ws, _file_events(100)).status_code == 200
        refused_events = _file_events(100)
        refused = _post(c, ws, refused_events)
        assert refused.status_code == 429, refused.text
        assert refused.json()["reason"] == "quota_events"
        assert "150 events per minute" in refused.json()["error"]
        assert int(refused.headers["retry-after"]) >= 1
        # another token's quota is its own
        assert _post(c, env.tokens["portal"], [sample_event().to_dict()]).status_code == 200
        text = scrape(c)
        summary = _rejections(log, c.app.state.audit)  # type: ignore[attr-defined]
    assert log.sequenced() == 100 + 1 + 1  # the batch, the portal's event, the summary
    held = {log.stored_event(i).event.id for i in range(log.sequenced())}
    assert not {e["id"] for e in refused_events} & held
    assert summary == {"quota_events": 1}
    line = next(x for x in text.splitlines() if 'reason="quota_events"' in x)
    assert float(line.split()[-1]) >= 1


def test_a_workspace_token_cannot_send_past_its_bytes_per_minute(
    env: AuditEnv, log: AuditLog
) -> None:
    ws = _workspace_token(env)
    with make_client(env, log, checkpoint_interval_seconds=0, token_bytes_per_minute=60_000) as c:
        first = _post(c, ws, _file_events(10, path_len=4000))  # about 43 KB
        assert first.status_code == 200, first.text
        refused = _post(c, ws, _file_events(10, path_len=4000))
        assert refused.status_code == 429
        assert refused.json()["reason"] == "quota_bytes"
        assert int(refused.headers["retry-after"]) >= 1
        assert log.sequenced() == 10


def test_a_body_of_many_megabytes_is_refused_before_it_is_read(
    env: AuditEnv, log: AuditLog
) -> None:
    """The default body limit is 4 MiB (it was 64 MiB: 24 such bodies took 1.4 GB)."""
    ws = _workspace_token(env)
    with make_client(env, log, checkpoint_interval_seconds=0) as c:
        body = b'{"events": ["' + b"x" * (5 * 1024 * 1024) + b'"]}'
        r = c.post("/v1/events", content=body, headers=bearer(ws))
        assert r.status_code == 413
        assert r.json()["reason"] == "too_large"
    assert ServiceSettings().max_body_bytes == 4 * 1024 * 1024


def test_many_concurrent_bodies_from_one_token_are_refused_not_held(
    env: AuditEnv, log: AuditLog
) -> None:
    """Bodies held at once are capped, in all and per token: beyond, 503 at once."""
    ws = _workspace_token(env)
    with make_client(
        env,
        log,
        checkpoint_interval_seconds=0,
        max_concurrent_bodies=2,
        max_concurrent_bodies_per_token=1,
    ) as c:
        state = c.app.state.audit  # type: ignore[attr-defined]
        blocker = sqlite3.connect(env.db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the writer waits: bodies stay held
        answers: dict[str, Any] = {}
        held: dict[str, list[dict[str, Any]]] = {
            "flood": _file_events(3),
            "portal": [sample_event().to_dict()],
        }

        def send(name: str, token: str) -> None:
            answers[name] = _post(c, token, held[name])

        def wait_pending(n: int) -> None:
            deadline = time.monotonic() + 10
            while state.writer.pending < n and time.monotonic() < deadline:
                time.sleep(0.01)  # poll interval; the deadline bounds the wait
            assert state.writer.pending == n

        flood = threading.Thread(target=send, args=("flood", ws))
        flood.start()
        wait_pending(1)
        second = _post(c, ws, _file_events(3))
        assert second.status_code == 503
        assert second.json()["reason"] == "busy"
        assert int(second.headers["retry-after"]) >= 1
        portal = threading.Thread(target=send, args=("portal", env.tokens["portal"]))
        portal.start()
        wait_pending(2)  # the portal still gets its body in
        full = _post(c, env.tokens["hub"], [sample_event(source="hub").to_dict()])
        assert full.status_code == 503
        assert full.json()["reason"] == "busy"
        blocker.execute("ROLLBACK")
        blocker.close()
        flood.join(timeout=60)
        portal.join(timeout=60)
        assert answers["flood"].status_code == 200
        assert answers["portal"].status_code == 200
        assert state.bodies.busy == 0  # every slot given back


def test_below_the_free_space_floor_only_the_portal_and_controller_get_in(
    env: AuditEnv, log: AuditLog
) -> None:
    ws = _workspace_token(env)
    controller = TokenStore(path=env.tokens_path).issue(source="controller", label="c").token
    with make_client(
        env,
        log,
        checkpoint_interval_seconds=0,
        min_free_bytes=2**62,  # more than any disk has: the floor is always crossed
    ) as c:
        refused = _post(c, ws, _file_events(1))
        assert refused.status_code == 503
        assert refused.json()["reason"] == "disk_low"
        assert int(refused.headers["retry-after"]) >= 1
        hub = _post(c, env.tokens["hub"], [sample_event(source="hub").to_dict()])
        assert hub.status_code == 503
        assert _post(c, env.tokens["portal"], [sample_event().to_dict()]).status_code == 200
        quarantine = sample_event(
            source="controller",
            actor="controller",
            action="enclave.deprovisioned",
            outcome="success",
            details={"reason": "expired"},
        ).to_dict()
        ok = _post(c, controller, [quarantine])
        assert ok.status_code == 200, ok.text
        _ui_session(c, env)  # the officers' own sign-ins are still recorded
        assert "enclave_audit_store_free_bytes" in scrape(c)
    assert "auth.factor.verified" in [e["action"] for e in _audit_events(log)]


# -- item 4: the sign-in callback ---------------------------------------------------------


def _oidc_app(env: AuditEnv, log: AuditLog, tmp_path: Path, **settings: Any) -> FastAPI:
    secret = tmp_path / "oidc-secret"
    secret.write_text("s" * 40)
    secret.chmod(0o600)
    return create_app(
        log=log,
        tokens=TokenStore(path=env.tokens_path),
        officer_token_file=env.officer_file,
        settings=ServiceSettings(checkpoint_interval_seconds=0, **settings),
        oidc=OidcConfig(
            issuer="https://portal.invalid",  # the refusals tested here never reach it
            client_id="audit-ui",
            client_secret_file=secret,
            redirect_uri="https://testserver/ui/oidc/callback",
        ),
    )


def test_anyone_calling_the_sign_in_callback_300_times_appends_a_bounded_record(
    env: AuditEnv, log: AuditLog, tmp_path: Path
) -> None:
    app = _oidc_app(env, log, tmp_path, max_login_failures=5)
    with client_from(app, "192.0.2.66") as flood, client_from(app, "198.51.100.4") as other:
        codes = [flood.get("/ui/oidc/callback?error=x").status_code for _ in range(300)]
        assert codes[:5] == [401] * 5
        assert set(codes[5:]) == {429}
        locked = flood.get("/ui/oidc/callback?error=x")
        assert int(locked.headers["retry-after"]) >= 1
        assert other.get("/ui/oidc/callback?error=x").status_code == 401  # its own address
        summary = _rejections(log, app.state.audit)
    events = _audit_events(log)
    failed = [e for e in events if e["action"] == "auth.factor.failed"]
    assert [e["client_ip"] for e in failed] == ["192.0.2.66"] * 5 + ["198.51.100.4"]
    assert [e["client_ip"] for e in events if e["action"] == "auth.lockout"] == ["192.0.2.66"]
    assert summary == {"oidc_callback_locked": 296}


# -- item 5: metrics ------------------------------------------------------------------------


def test_a_workspace_cannot_watch_officers_through_metrics(env: AuditEnv, log: AuditLog) -> None:
    with make_client(env, log, checkpoint_interval_seconds=0) as c:
        assert c.get("/metrics").status_code == 404  # not on the intake/officer port
        h = bearer(env.officer_token)
        for _ in range(3):
            assert c.get("/v1/events", headers=h).status_code == 200
        assert c.post("/v1/checkpoints", headers=h).status_code == 200
        text = scrape(c)
    assert "officer_reads" not in text
    assert "enclave_audit_verifications" not in text
    assert 'trigger="demand"' not in text
    assert "enclave_audit_intake_rejections_total" in text  # the rest is still there


# -- item 10: officer actions that change the log -----------------------------------------


def test_an_officer_cannot_sign_a_checkpoint_unrecorded(env: AuditEnv, log: AuditLog) -> None:
    with make_client(env, log, checkpoint_interval_seconds=0) as c:
        _post(c, env.tokens["portal"], [sample_event().to_dict()])
        csrf = _ui_session(c, env)
        r = c.post("/ui/checkpoints", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303
        api = c.post("/v1/checkpoints", headers=bearer(env.officer_token))
        assert api.status_code == 200
    published = [e for e in _audit_events(log) if e["action"] == "audit.checkpoint.published"]
    assert [e["actor"] for e in published] == ["officer:bootstrap"] * 2
    assert all(e["details"]["size"] >= 1 for e in published)


def test_an_officer_cannot_start_verifications_unrecorded_or_without_bound(
    env: AuditEnv, log: AuditLog
) -> None:
    with make_client(env, log, checkpoint_interval_seconds=0) as c:
        state = c.app.state.audit  # type: ignore[attr-defined]
        csrf = _ui_session(c, env)
        r = c.post("/ui/verify", headers={"x-csrf-token": csrf})
        assert r.status_code == 200, r.text
        job = r.json()["job"]
        deadline = time.monotonic() + 30
        while state.verify_jobs[job].finished is None and time.monotonic() < deadline:
            time.sleep(0.05)  # poll interval; the deadline bounds the wait
        # one running job per officer: hold a place as a long verification would
        from audit.service._state import VerifyJob

        state.verify_jobs["running"] = VerifyJob(
            id="running", started=time.time(), total=1, officer="officer:bootstrap"
        )
        again = c.post("/ui/verify", headers={"x-csrf-token": csrf})
        assert again.status_code == 429
        assert int(again.headers["retry-after"]) >= 1
        assert "running" in again.json()["error"]
        summary = _rejections(log, state)
    started = [e for e in _audit_events(log) if e["action"] == "audit.verify.started"]
    assert [(e["actor"], e["details"]["job"]) for e in started] == [("officer:bootstrap", job)]
    assert summary == {"verify_busy": 1}
