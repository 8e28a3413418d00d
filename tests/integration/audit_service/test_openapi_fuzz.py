"""Requests generated from the OpenAPI document (schemathesis strategies, hypothesis)
never make the real service fail: every answer is below 500, or 503 with Retry-After."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.harness.audit_service import ServiceProcess, make_audit_env

_PUBLIC = ("/v1/checkpoint", "/v1/proofs/consistency", "/v1/key", "/tlog")


def test_generated_requests_never_make_the_server_fail(tmp_path: Path) -> None:
    env = make_audit_env(tmp_path / "audit")
    with ServiceProcess(env, checkpoint_interval=0.5) as served:
        schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
        operations = [op.ok() for op in schema.get_all_operations()]
        assert len(operations) >= 10
        statuses: list[int] = []
        for op in operations:

            @given(case=op.as_strategy())
            @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                if case.path == "/v1/events" and case.method.upper() == "POST":
                    token = env.tokens["portal"]
                elif case.path.startswith(_PUBLIC):
                    token = None
                else:
                    token = env.officer_token
                headers = dict(case.headers or {})
                if token is not None:
                    headers["Authorization"] = f"Bearer {token}"
                case.headers = headers
                response = case.call(base_url=served.url)
                statuses.append(response.status_code)
                assert response.status_code < 500 or (
                    response.status_code == 503 and "retry-after" in response.headers
                ), (case.method, case.formatted_path, response.status_code, response.text[:300])

            check()
        assert len(statuses) > 3 * len(operations)
        assert 200 in statuses  # not only refusals
