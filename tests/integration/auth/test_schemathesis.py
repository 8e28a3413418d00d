"""Schemathesis against the portal's own OpenAPI document (bounded examples).

Every operation: no 5xx, responses match their documented schema, status code and
content type. The admin API is exercised with a valid admin token, so its bodies
reach the services; the portal pages without a session answer 4xx or redirects.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from auth import MemoryAuditSink, create_app

from .helpers import ADMIN_TOKEN, make_portal

_TMP = Path(tempfile.mkdtemp(prefix="portal-schemathesis-"))
_PORTAL, _SINK = make_portal(_TMP)
APP = create_app(portal=_PORTAL)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_portal_api_conforms(case: schemathesis.Case) -> None:
    headers = (
        {"Authorization": f"Bearer {ADMIN_TOKEN}"} if case.path.startswith("/api/admin") else None
    )
    case.call_and_validate(
        headers=headers,
        checks=[
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
        ],
    )
    assert isinstance(_SINK, MemoryAuditSink)
