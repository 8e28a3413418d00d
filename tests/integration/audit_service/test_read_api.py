"""The officer read API: filters, cursor pages, CSV/JSON export, proofs, checkpoints,
officer authentication, and the rule that every read is itself recorded."""

from __future__ import annotations

import base64
import csv
import io
import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from audit import parse_checkpoint
from audit._merkle import leaf_hash, verify_consistency, verify_inclusion
from audit._note import Verifier
from audit.log import AuditLog
from tests.harness.audit_service import AuditEnv, sample_event

from .conftest import bearer, make_client, scrape


def _seed(client: TestClient, env: AuditEnv) -> list[dict[str, Any]]:
    events = []
    for i in range(60):
        events.append(
            sample_event(
                actor=("alice@x.example", "bob@x.example", "=cmd|' /C calc'!A0")[i % 3],
                enclave=("e1", "e2")[i % 2],
                action=("auth.factor.failed", "session.started")[i % 2],
                outcome=("failure", "success")[i % 2],
                details=({"factor": "totp", "reason": "bad"}, {})[i % 2],
                time=f"2026-11-{10 + i // 20:02d}T10:{i % 60:02d}:00Z",
            ).to_dict()
        )
    hub = [sample_event(source="hub", actor="alice@x.example").to_dict() for _ in range(5)]
    assert (
        client.post(
            "/v1/events", json={"events": events}, headers=bearer(env.tokens["portal"])
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/v1/events", json={"events": hub}, headers=bearer(env.tokens["hub"])
        ).status_code
        == 200
    )
    return events + hub


def _reads(log: AuditLog) -> list[dict[str, Any]]:
    rows = log.store.entries(0, log.sequenced())
    return [orjson.loads(r[-1]) for r in rows if r[6] == "audit.read"]


@pytest.mark.parametrize(
    "path",
    ["/v1/events", "/v1/export", "/v1/events/0", "/v1/proofs/inclusion?index=0", "/v1/checkpoints"],
)
def test_reads_need_an_officer(client: TestClient, env: AuditEnv, log: AuditLog, path: str) -> None:
    _seed(client, env)
    n = log.sequenced()
    for headers in ({}, bearer("x" * 43), bearer(env.tokens["portal"])):
        r = client.get(path, headers=headers)
        assert r.status_code == 401, (path, headers, r.text)
    assert log.sequenced() == n  # a refused read records nothing and reveals nothing


def test_without_an_officer_token_file_nobody_reads(env: AuditEnv, log: AuditLog) -> None:
    from audit.server import create_app
    from audit.tokens import TokenStore

    app = create_app(log=log, tokens=TokenStore(path=env.tokens_path), officer_token_file=None)
    with TestClient(app, base_url="https://testserver") as c:
        assert c.get("/v1/events", headers=bearer(env.officer_token)).status_code == 401


@pytest.mark.parametrize(
    ("params", "expect"),
    [
        ({"actor": "alice@x.example"}, lambda e: e["actor"] == "alice@x.example"),
        ({"enclave": "e2"}, lambda e: e["enclave"] == "e2"),
        ({"action": "session.started"}, lambda e: e["action"] == "session.started"),
        ({"outcome": "failure"}, lambda e: e["outcome"] == "failure"),
        ({"source": "hub"}, lambda e: e["source"] == "hub"),
        (
            {"since": "2026-11-11T00:00:00Z", "until": "2026-11-12T00:00:00Z"},
            lambda e: e["time"].startswith("2026-11-11"),
        ),
        (
            {"actor": "bob@x.example", "since": "2026-11-12T00:00:00Z"},
            lambda e: e["actor"] == "bob@x.example" and e["time"] >= "2026-11-12",
        ),
    ],
    ids=["actor", "enclave", "action", "outcome", "source", "day", "actor+since"],
)
def test_filters_and_cursor_pages_return_exactly_the_matching_events(
    client: TestClient, env: AuditEnv, params: dict[str, str], expect: Any
) -> None:
    seeded = _seed(client, env)
    want = sorted(e["id"] for e in seeded if expect(e))
    assert want
    got: list[str] = []
    cursor = None
    pages = 0
    while True:
        q = params | {"limit": "7"} | ({"cursor": cursor} if cursor else {})
        r = client.get("/v1/events", params=q, headers=bearer(env.officer_token))
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["events"]) <= 7
        got += [e["id"] for e in body["events"] if e["action"] != "audit.read"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(got) == want
    assert len(got) == len(set(got))
    assert pages >= len(want) // 7


def test_bad_query_input_is_400_with_one_sentence(client: TestClient, env: AuditEnv) -> None:
    h = bearer(env.officer_token)
    r = client.get("/v1/events", params={"since": "yesterday"}, headers=h)
    assert r.status_code == 422
    assert "'since'" in r.json()["error"]
    r = client.get("/v1/events", params={"cursor": "!!!"}, headers=h)
    assert r.status_code == 422
    assert "cursor" in r.json()["error"]
    r = client.get("/v1/events", params={"limit": "0"}, headers=h)
    assert r.status_code == 422


def test_every_read_is_recorded_with_who_and_what(
    client: TestClient, env: AuditEnv, log: AuditLog
) -> None:
    _seed(client, env)
    h = bearer(env.officer_token)
    client.get("/v1/events", params={"actor": "alice@x.example"}, headers=h)
    client.get("/v1/events/3", headers=h)
    client.get("/v1/export", params={"format": "csv", "enclave": "e1"}, headers=h)
    reads = _reads(log)
    assert [r["details"]["view"] for r in reads] == ["search", "event", "export"]
    assert all(r["actor"] == "officer:bootstrap" and r["source"] == "audit" for r in reads)
    assert orjson.loads(reads[0]["details"]["query"]) == {"actor": "alice@x.example"}
    assert reads[0]["details"]["results"] > 0
    assert orjson.loads(reads[1]["details"]["query"]) == {"index": 3}
    assert reads[2]["details"]["format"] == "csv"


def test_csv_and_json_export_hold_the_whole_result_set(client: TestClient, env: AuditEnv) -> None:
    seeded = _seed(client, env)
    h = bearer(env.officer_token)
    want = {e["id"] for e in seeded if e["enclave"] == "e1"}
    r = client.get("/v1/export", params={"format": "json", "enclave": "e1"}, headers=h)
    assert r.status_code == 200
    assert "attachment" in r.headers["content-disposition"]
    assert {e["id"] for e in orjson.loads(r.content)} == want
    r = client.get("/v1/export", params={"format": "csv", "enclave": "e1"}, headers=h)
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["id"] for row in rows} == want
    # a value that a spreadsheet would run as a formula is made inert
    evil = [row["actor"] for row in rows if "calc" in row["actor"]]
    assert evil
    assert all(a.startswith("'=") for a in evil)


def test_proofs_verify_against_the_signed_checkpoint(
    client: TestClient, env: AuditEnv, log: AuditLog
) -> None:
    _seed(client, env)
    h = bearer(env.officer_token)
    note = client.post("/v1/checkpoints", headers=h)
    assert note.status_code == 200
    vkey = client.get("/v1/key").text.strip()
    cp = parse_checkpoint(note.text, [Verifier.parse(vkey)])
    assert client.get("/v1/checkpoint").text == note.text  # the public latest checkpoint
    for index in (0, 17, cp.size - 1):
        r = client.get("/v1/proofs/inclusion", params={"index": index, "size": cp.size}, headers=h)
        body = r.json()
        entry = base64.b64decode(body["entry"])
        assert base64.b64decode(body["leaf_hash"]) == leaf_hash(entry)
        verify_inclusion(
            leaf_hash=leaf_hash(entry),
            index=index,
            size=cp.size,
            proof=[base64.b64decode(x) for x in body["hashes"]],
            root=cp.root_hash,
        )
    old = parse_checkpoint(
        client.get("/v1/checkpoints", headers=h).json()[0]["text"], [Verifier.parse(vkey)]
    )
    client.get("/v1/events", headers=h)  # grows the log (the read is recorded)
    new = parse_checkpoint(client.post("/v1/checkpoints", headers=h).text, [Verifier.parse(vkey)])
    assert new.size > old.size
    r = client.get("/v1/proofs/consistency", params={"old": old.size, "size": new.size})
    verify_consistency(
        old_size=old.size,
        size=new.size,
        proof=[base64.b64decode(x) for x in r.json()["hashes"]],
        old_root=old.root_hash,
        root=new.root_hash,
    )
    r = client.get("/v1/proofs/consistency", params={"old": new.size + 5})
    assert r.status_code == 404


def test_checkpoints_are_published_on_an_interval_and_exported_for_witnesses(
    env: AuditEnv, log: AuditLog
) -> None:
    assert env.checkpoint_export is not None
    with make_client(
        env,
        log,
        checkpoint_interval_seconds=0.2,
        integrate_interval_seconds=0.05,
        checkpoint_export_path=env.checkpoint_export,
    ) as client:
        events = [sample_event().to_dict() for _ in range(10)]
        client.post("/v1/events", json={"events": events}, headers=bearer(env.tokens["portal"]))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if env.checkpoint_export.exists():
                text = env.checkpoint_export.read_text()
                if text.split("\n")[1] == "10":
                    break
            time.sleep(0.05)
        cp = parse_checkpoint(
            env.checkpoint_export.read_text(), [Verifier.parse(log.verifier_key())]
        )
        assert cp.size == 10
        metrics = scrape(client)
        assert 'enclave_audit_checkpoints_published_total{trigger="interval"}' in metrics


def test_openapi_documents_intake_and_back_pressure(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/events"]["post"]
    assert (
        post["requestBody"]["content"]["application/json"]["schema"]["properties"]["events"][
            "maxItems"
        ]
        == 1000
    )
    assert {"401", "403", "413", "422", "503"} <= set(post["responses"])
    assert "atomically" in post["description"]
    for path in (
        "/v1/events",
        "/v1/export",
        "/v1/proofs/inclusion",
        "/v1/proofs/consistency",
        "/v1/checkpoint",
    ):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 404  # no CDN-loading doc pages


def test_metrics_count_rejections_and_batch_sizes(client: TestClient, env: AuditEnv) -> None:
    client.post(
        "/v1/events", json={"events": [sample_event().to_dict()] * 1}, headers=bearer("nope")
    )
    client.post(
        "/v1/events",
        json={"events": [sample_event().to_dict() for _ in range(100)]},
        headers=bearer(env.tokens["portal"]),
    )
    text = scrape(client)
    line = next(
        x
        for x in text.splitlines()
        if x.startswith('enclave_audit_intake_rejections_total{reason="unauthenticated"}')
    )
    assert float(line.split()[-1]) >= 1
    assert 'enclave_audit_intake_batch_size_bucket{le="100.0"}' in text
    assert "enclave_audit_intake_append_latency_seconds_count" in text
    assert "enclave_audit_append_latency_seconds" in text  # the log's own histogram


def test_newest_first_pages_run_backwards_in_time(client: TestClient, env: AuditEnv) -> None:
    _seed(client, env)
    h = bearer(env.officer_token)
    times: list[str] = []
    cursor = None
    while True:
        q = {"source": "portal", "order": "desc", "limit": "9"} | (
            {"cursor": cursor} if cursor else {}
        )
        body = client.get("/v1/events", params=q, headers=h).json()
        times += [e["time"] for e in body["events"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(times) == 60
    assert times == sorted(times, reverse=True)
    assert client.get("/v1/events", params={"order": "sideways"}, headers=h).status_code == 422


def test_an_inclusion_proof_without_size_comes_with_its_signed_checkpoint(
    client: TestClient, env: AuditEnv, log: AuditLog
) -> None:
    _seed(client, env)
    r = client.get("/v1/proofs/inclusion", params={"index": 42}, headers=bearer(env.officer_token))
    assert r.status_code == 200, r.text
    body = r.json()
    cp = parse_checkpoint(body["checkpoint"], [Verifier.parse(log.verifier_key())])
    assert cp.size == body["size"] > 42
    assert base64.b64decode(body["root_hash"]) == cp.root_hash
    verify_inclusion(
        leaf_hash=leaf_hash(base64.b64decode(body["entry"])),
        index=42,
        size=cp.size,
        proof=[base64.b64decode(x) for x in body["hashes"]],
        root=cp.root_hash,
    )
