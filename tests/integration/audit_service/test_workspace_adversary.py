"""Issue #12, items 1, 2, 8 and 9: what a workspace's intake token can make the log say.

Code inside a workspace is written by the researcher and can read the workspace's
intake token. Each test here sends what such code could send, with a workspace token
bound to one enclave, to a locally started ``python -m audit.service``, and checks
that it is refused (or harmless) while the portal's writes keep working.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from audit._store import Query
from audit.cli import audit
from audit.log import AuditLog, open_log
from audit.tokens import TokenStore
from tests.harness.audit_service import AuditEnv, ServiceProcess, make_audit_env, sample_event

from .conftest import make_client

ENCLAVE = "gut-microbiome-2026"


@dataclass(frozen=True)
class Stack:
    svc: ServiceProcess
    env: AuditEnv
    workspace: str  # the workspace's intake token, bound to ENCLAVE
    portal: str

    def post(self, token: str, events: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(
            self.svc.url + "/v1/events",
            json={"events": events},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def officer_get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(
            self.svc.url + path,
            params=params,
            headers={"Authorization": f"Bearer {self.env.officer_token}"},
            timeout=30,
        )

    def stored(self, **query: Any) -> list[dict[str, Any]]:
        with open_log(self.env.store_url, create=False) as log:
            rows, _ = log.query(Query(**query), limit=1000)
            return [r.to_dict() for r in rows]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    env = make_audit_env(tmp_path / "audit", sources=("portal",))
    workspace = (
        TokenStore(path=env.tokens_path)
        .issue(source="workspace", enclave=ENCLAVE, label="researcher code")
        .token
    )
    svc = ServiceProcess(env)
    with svc:
        yield Stack(svc=svc, env=env, workspace=workspace, portal=env.tokens["portal"])


def workspace_event(**over: Any) -> dict[str, Any]:
    """A valid workspace event as JSON, with ``over`` put in unchecked (as an attacker's
    code would send it)."""
    fields: dict[str, Any] = {
        "source": "workspace",
        "actor": "r.tanaka@company-a.example",
        "action": "workspace.file.get",
        "outcome": "success",
        "enclave": ENCLAVE,
        "details": {"path": "/data/microbiome-16s/counts.tsv"},
    }
    return sample_event(**fields).to_dict() | over


def _at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rejections(stack: Stack, reason: str) -> int:
    stack.svc.stop()  # the service writes its rejection summary when it stops
    found = stack.stored(action="audit.intake.rejected", source="audit")
    return sum(e["details"]["count"] for e in found if e["details"]["reason"] == reason)


# -- item 1: times --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        "2263-01-01T00:00:00Z",  # past what a signed 64-bit nanosecond count holds
        "1600-01-01T00:00:00Z",  # before it
        "2001-01-01T00:00:00Z",  # holdable, but implausibly far before its receipt
        "past-31-days",
        "future-1-hour",
    ],
)
def test_an_out_of_range_or_far_off_time_is_refused_naming_the_field(
    stack: Stack, when: str
) -> None:
    claimed = {
        "past-31-days": _at(timedelta(days=-31)),
        "future-1-hour": _at(timedelta(hours=1)),
    }.get(when, when)
    r = stack.post(stack.workspace, [workspace_event(), workspace_event(time=claimed)])
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "time"
    assert r.json()["index"] == 1
    assert "nothing of the batch was appended" in r.json()["error"]
    ok = stack.post(stack.portal, [sample_event().to_dict()])
    assert ok.status_code == 200, ok.text  # the portal's next write is not disturbed
    assert stack.stored(source="workspace") == []
    assert _rejections(stack, "invalid_event") == 1


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/events", {"since": "9999-12-31T23:59:59Z"}),
        ("/v1/events", {"until": "0001-01-01T00:00:00Z"}),
        (
            "/v1/events",
            {"cursor": base64.urlsafe_b64encode(b"99999999999999999999:0").decode()},
        ),
        (
            "/v1/events",
            {"cursor": base64.urlsafe_b64encode(b"0:99999999999999999999").decode()},
        ),
        ("/v1/export", {"since": "9999-12-31T23:59:59Z"}),
        ("/v1/events/99999999999999999999", {}),
        ("/v1/proofs/inclusion", {"index": "99999999999999999999"}),
    ],
    ids=["since", "until", "cursor-time", "cursor-index", "export", "event", "proof"],
)
def test_officer_queries_with_times_or_positions_the_log_cannot_hold_are_4xx(
    stack: Stack, path: str, params: dict[str, str]
) -> None:
    assert stack.post(stack.portal, [sample_event().to_dict()]).status_code == 200
    r = stack.officer_get(path, **params)
    assert 400 <= r.status_code < 500, r.text
    assert "Traceback" not in r.text


# -- item 2: who may send which action -------------------------------------------------------


@pytest.mark.parametrize(
    "forged",
    [
        {
            "actor": "officer:bootstrap",
            "action": "auth.factor.verified",
            "enclave": ENCLAVE,
            "details": {"factor": "webauthn"},
        },
        {
            "actor": "steward@provider.example",
            "action": "export.approved",
            "details": {"request_id": "exp-1", "reviewer": "steward@provider.example"},
        },
        {"actor": "officer:bootstrap", "action": "audit.read", "details": {"view": "search"}},
        {"action": "session.started", "details": {"tier": "nbdc-high"}},
    ],
    ids=["officer-factor", "export-approval", "officer-read", "session-start"],
)
def test_a_workspace_token_cannot_write_another_components_action(
    stack: Stack, forged: dict[str, Any]
) -> None:
    r = stack.post(stack.workspace, [workspace_event(), workspace_event(**forged)])
    assert r.status_code == 403, r.text
    assert r.json()["reason"] == "action_not_allowed"
    assert r.json()["field"] == "action"
    assert r.json()["index"] == 1
    assert forged["action"] in r.json()["error"]
    assert stack.stored(source="workspace") == []
    assert _rejections(stack, "action_not_allowed") == 1


@pytest.mark.parametrize(
    "forged",
    [
        {"action": "auth.factor.verified", "details": {"factor": "webauthn"}},
        {"action": "workspace.file.get", "details": {"path": "/data/a.tsv"}},
    ],
    ids=["portal-action", "workspace-action"],
)
def test_a_hub_token_cannot_write_the_portals_or_a_workspaces_action(
    stack: Stack, forged: dict[str, Any]
) -> None:
    hub = TokenStore(path=stack.env.tokens_path).issue(source="hub", enclave=ENCLAVE).token
    own = sample_event(source="hub").to_dict()
    deadline = time.monotonic() + 5  # the service looks at the token file every 0.25 s
    while (r := stack.post(hub, [own])).status_code == 401 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.status_code == 200, r.text  # a hub may record its own session events
    r = stack.post(hub, [sample_event(source="hub").to_dict() | {"source": "hub"} | forged])
    assert r.status_code == 403, r.text
    assert r.json()["reason"] == "action_not_allowed"
    assert [e["action"] for e in stack.stored(source="hub")] == ["session.started"]


def test_a_workspace_token_still_writes_its_own_actions(stack: Stack) -> None:
    r = stack.post(stack.workspace, [workspace_event()])
    assert r.status_code == 200, r.text
    assert [e["action"] for e in stack.stored(source="workspace")] == ["workspace.file.get"]


# -- item 8: invisible and bidirectional characters ------------------------------------------


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"actor": "r.tanaka@company-a.example\u202eelpmaxe.rotceles"}, "actor"),
        ({"actor": "r.tanaka\u200b@company-a.example"}, "actor"),
        ({"actor": "r.tanaka@company-a.example\x85"}, "actor"),
        ({"details": {"path": "/data/a.tsv\u2028session.started ok"}}, "details.path"),
        ({"details": {"path": "/data/\u2066a.tsv\u2069"}}, "details.path"),
    ],
    ids=["rlo-actor", "zero-width-actor", "c1-actor", "line-separator-detail", "isolate-detail"],
)
def test_invisible_and_bidirectional_characters_are_refused(
    stack: Stack, over: dict[str, Any], field: str
) -> None:
    r = stack.post(stack.workspace, [workspace_event(**over)])
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert "U+" in r.json()["error"]
    assert stack.stored(source="workspace") == []


# -- item 9: event ids per source and enclave -------------------------------------------------


def test_a_workspace_cannot_suppress_a_portal_event_by_taking_its_id_first(stack: Stack) -> None:
    predicted = uuid.uuid4().hex  # say the portal's ids were predictable
    squat = stack.post(stack.workspace, [workspace_event(id=predicted)])
    assert squat.status_code == 200, squat.text
    genuine = sample_event(id=predicted).to_dict()
    r = stack.post(stack.portal, [genuine])
    assert r.status_code == 200, r.text  # appended, not refused as a conflict
    stored = stack.stored(source="portal")
    assert [(e["id"], e["action"]) for e in stored] == [(predicted, "auth.factor.failed")]
    assert r.json()["indexes"] != squat.json()["indexes"]


def test_an_id_conflict_names_no_index(stack: Stack) -> None:
    first = workspace_event()
    assert stack.post(stack.workspace, [first]).status_code == 200
    changed = dict(first, details={"path": "/data/other.tsv"})
    r = stack.post(stack.workspace, [changed])
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "id"
    assert "index" not in r.json()["error"]
    assert "0" not in r.json()["error"].replace(first["id"], "")


@pytest.mark.parametrize(
    ("argv", "hint", "words"),
    [
        (["--source", "audit"], "--source", "writes its own events"),
        (["--source", "audit", "--enclave", ENCLAVE], "--source", "writes its own events"),
        (["--source", "workspace"], "--enclave", "must be bound to its enclave"),
        (["--source", "hub"], "--enclave", "must be bound to its enclave"),
    ],
    ids=["audit", "audit-bound", "unbound-workspace", "unbound-hub"],
)
def test_no_token_is_issued_to_write_as_the_service_or_for_no_enclave(
    tmp_path: Path, argv: list[str], hint: str, words: str
) -> None:
    tokens = tmp_path / "t.json"
    store = f"sqlite:///{tmp_path / 'audit.db'}"
    r = CliRunner().invoke(
        audit, ["token", "issue", "--tokens", str(tokens), "--store", store, *argv]
    )
    assert r.exit_code == 2, r.output
    assert hint in r.output
    assert words in r.output
    assert "Traceback" not in r.output
    assert not tokens.exists()


# -- what the officer UI shows of entries stored before these checks ---------------------------


def _ui_login(client: TestClient, token: str) -> None:
    form = client.get("/ui/login")
    csrf = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    r = client.post(
        "/ui/login", data={"token": token, "login_csrf": csrf.group(1)}, follow_redirects=False
    )
    assert r.status_code == 303, r.text


def test_forged_actions_stored_earlier_are_not_counted_in_the_overview(
    env: AuditEnv, log: AuditLog
) -> None:
    # Entries a workspace token could write before intake checked sources: they stay in
    # the log (it is append-only) but count for nothing, and are marked where listed.
    forged = [
        sample_event(source="workspace", action="session.started", details={}) for _ in range(3)
    ]
    log.append([*forged, sample_event(source="portal", action="session.started", details={})])
    with make_client(env, log, checkpoint_interval_seconds=0) as client:
        _ui_login(client, env.officer_token)
        page = client.get("/ui/")
        assert page.status_code == 200
        assert f"{ENCLAVE} (1)" in page.text  # the portal's entry only
        assert f"{ENCLAVE} (4)" not in page.text
        table = client.get("/ui/search", params={"action": "session.started"})
        assert table.text.count('class="unentitled"') == 3
        assert table.text.count("<td>workspace") == 3  # the source is shown


def test_invisible_characters_stored_earlier_are_shown_escaped(
    env: AuditEnv, log: AuditLog
) -> None:
    spoof = "admin@hospital.example\u202etxt.exe"
    log.append([sample_event(actor=spoof, details={"factor": "totp", "reason": "a\u2028b"})])
    with make_client(env, log, checkpoint_interval_seconds=0) as client:
        _ui_login(client, env.officer_token)
        for path in ("/ui/search", "/ui/events/0", f"/ui/actors/{spoof}"):
            page = client.get(path)
            assert page.status_code == 200, (path, page.text[-400:])
            assert "\u202e" not in page.text, path
            assert "\\u202e" in page.text, path
        assert "\u2028" not in client.get("/ui/events/0").text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/ui/search", {"since": "9999-12-31T23:59"}),
        ("/ui/search", {"cursor": base64.urlsafe_b64encode(b"99999999999999999999:0").decode()}),
        ("/ui/actors/someone", {"cursor": base64.urlsafe_b64encode(b"0:-1").decode()}),
        ("/ui/events/99999999999999999999", {}),
    ],
    ids=["search-since", "search-cursor", "timeline-cursor", "event"],
)
def test_officer_ui_pages_with_times_or_positions_the_log_cannot_hold_are_4xx(
    env: AuditEnv, log: AuditLog, path: str, params: dict[str, str]
) -> None:
    log.append([sample_event()])
    with make_client(env, log, checkpoint_interval_seconds=0) as client:
        _ui_login(client, env.officer_token)
        r = client.get(path, params=params)
        assert 400 <= r.status_code < 500, (r.status_code, r.text[-300:])
        assert "Traceback" not in r.text
