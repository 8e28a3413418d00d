"""X-Forwarded-For through the audit service's HTTP routes: every header line is one
list, read from the right through trusted proxies only (issue #11 item 4).

The attack: the client sends its own ``X-Forwarded-For`` line with a forged address;
the trusted proxy appends a second line with the address it really saw. Reading only
the first line records the forged address and lets a token guesser escape the
per-address lock by changing it on every try."""

from __future__ import annotations

from typing import Any

import orjson

from audit.log import AuditLog
from tests.harness.audit_service import AuditEnv

from .conftest import bearer, client_from, make_app

PROXY = "10.0.0.5"
OUTSIDER = "203.0.113.66"  # the guesser's real address, appended by the proxy


def _reads(log: AuditLog) -> list[dict[str, Any]]:
    rows = log.store.entries(0, log.sequenced())
    events = [orjson.loads(r[-1]) for r in rows if r[4] == "audit"]
    return [e for e in events if e["action"] == "audit.read"]


def test_forged_address_in_an_earlier_forwarded_line_is_neither_recorded_nor_unlocks(
    env: AuditEnv, log: AuditLog
) -> None:
    app = make_app(
        env,
        log,
        checkpoint_interval_seconds=0,
        max_login_failures=2,
        trusted_proxies=("10.0.0.0/8",),
    )
    with client_from(app, PROXY) as proxy:
        for n in range(2):
            forged = [("X-Forwarded-For", f"198.51.100.{n + 1}"), ("X-Forwarded-For", OUTSIDER)]
            r = proxy.get("/v1/events", headers=[*bearer("guess-" + "q" * 40).items(), *forged])
            assert r.status_code == 401
        # A third forged address does not make a fresh client: the real one is locked.
        forged = [("X-Forwarded-For", "198.51.100.3"), ("X-Forwarded-For", OUTSIDER)]
        locked = proxy.get("/v1/events", headers=[*bearer(env.officer_token).items(), *forged])
        assert locked.status_code == 429
        assert locked.json()["reason"] == "locked"
        # An officer elsewhere, whose proxy line follows a forged one, is recorded as herself.
        officer = [("X-Forwarded-For", OUTSIDER), ("X-Forwarded-For", "192.0.2.20, 10.9.9.9")]
        ok = proxy.get("/v1/events", headers=[*bearer(env.officer_token).items(), *officer])
        assert ok.status_code == 200
    assert [e["client_ip"] for e in _reads(log)] == ["192.0.2.20"]
