"""Issue #12's acceptance, on loopback against the real ``enclave audit serve`` process:
a workspace token flooding at its quota leaves the portal's writes and the officers'
reads whole; and the process serves metrics on their own listener only."""

from __future__ import annotations

from pathlib import Path

import httpx

from audit.log import open_log
from audit.tokens import TokenStore
from tests.harness.audit_service import ServiceProcess, make_audit_env
from tests.harness.common import free_port
from tests.harness.flood import ENCLAVE, run_flood


def test_a_workspace_flooding_at_its_quota_leaves_portal_writes_and_officer_reads_whole(
    tmp_path: Path,
) -> None:
    env = make_audit_env(tmp_path / "audit")
    workspace = TokenStore(path=env.tokens_path).issue(
        source="workspace", label="researcher code", enclave=ENCLAVE
    )
    # the quota holds for every token: the portal's 300 events stay below it
    with ServiceProcess(env, extra_args=("--token-events-per-minute", "6000")) as svc:
        result = run_flood(
            url=svc.url,
            workspace_token=workspace.token,
            portal_token=env.tokens["portal"],
            officer_token=env.officer_token,
            portal_batches=60,
            officer_reads=30,
        )
    assert result.portal_statuses == {200: 60}
    assert result.officer_statuses == {200: 30}
    assert result.flood_statuses.get(429, 0) >= 1  # the flood was at its quota
    assert set(result.flood_statuses) <= {200, 429, 503}  # refused, never failed
    with open_log(env.store_url) as log:
        held = {log.stored_event(i).event.id for i in range(log.sequenced())}
        sources = [log.stored_event(i).event.source for i in range(log.sequenced())]
    assert set(result.portal_event_ids) <= held
    # the flood got in exactly what it was acknowledged, no more than its quota allowed
    assert sources.count("workspace") == 50 * result.flood_statuses.get(200, 0)


def test_the_service_serves_metrics_on_their_own_listener_only(tmp_path: Path) -> None:
    env = make_audit_env(tmp_path / "audit")
    mport = free_port()
    with ServiceProcess(env, extra_args=("--metrics-port", str(mport))) as svc:
        assert httpx.get(svc.url + "/metrics").status_code == 404
        r = httpx.get(f"http://127.0.0.1:{mport}/metrics")
        assert r.status_code == 200
        assert "enclave_audit_intake_rejections_total" in r.text
        assert httpx.get(f"http://127.0.0.1:{mport}/v1/checkpoint").status_code == 404
