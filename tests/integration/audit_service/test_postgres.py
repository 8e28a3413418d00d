"""The service and the client spool on a real PostgreSQL store (writer role)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import orjson
import pytest

from audit._store_postgres import PostgresStore
from audit.client import AuditClient
from audit.log import open_log
from tests.harness.audit_service import ServiceProcess, make_audit_env, sample_event
from tests.harness.postgres import PgDatabase

pytestmark = pytest.mark.postgres


def test_service_and_spool_on_postgres(postgres_db: PgDatabase, tmp_path: Path) -> None:
    store = PostgresStore(postgres_db.admin_url)
    try:
        store.migrate(writer=postgres_db.writer_role)
    finally:
        store.close()
    env = dataclasses.replace(make_audit_env(tmp_path / "audit"), store_url=postgres_db.writer_url)
    sp = ServiceProcess(env).start()
    client = AuditClient.http(
        url=sp.url,
        token=env.tokens["portal"],
        spool_path=tmp_path / "spool.db",
        max_backoff=0.3,
    )
    sent = []
    try:
        bad = [sample_event().to_dict(), sample_event().to_dict() | {"outcome": "maybe"}]
        r = httpx.post(
            sp.url + "/v1/events",
            content=orjson.dumps({"events": bad}),
            headers={"Authorization": f"Bearer {env.tokens['portal']}"},
        )
        assert r.status_code == 422
        assert (r.json()["index"], r.json()["field"]) == (1, "outcome")
        for i in range(100):
            e = sample_event(actor=f"a{i}@x.example")
            client.emit(e)
            sent.append(e.id)
        assert client.flush(timeout=30), client.last_error
        sp.stop()
        for i in range(100):
            e = sample_event(actor=f"b{i}@x.example")
            client.record(e)
            sent.append(e.id)
        sp.start()
        assert client.flush(timeout=30), client.last_error
    finally:
        client.close()
        sp.stop()
    with open_log(postgres_db.admin_url) as log:
        rows = log.store.entries(0, log.sequenced())
    assert [str(r[2]) for r in rows if r[4] == "portal"] == sent
