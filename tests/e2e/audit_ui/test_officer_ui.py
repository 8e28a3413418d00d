"""The officer UI in real Chromium against the real service process: login with the
bootstrap token, search, an event page whose inclusion proof is verified in the
browser, verify-all with progress, Japanese labels, and every read in the log."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import expect

from audit.log import open_log
from tests.harness.audit_service import AuditEnv, ServiceProcess, make_audit_env, sample_event

pytestmark = pytest.mark.browser


def _seed(sp: ServiceProcess, env: AuditEnv) -> list[dict[str, Any]]:
    events = []
    for i in range(30):
        events.append(
            sample_event(
                actor="r.tanaka@company-a.example" if i % 3 else "k.sato@tohoku.example",
                action="session.started",
                outcome="success",
                enclave=("gut-microbiome-2026", "cohort-wgs")[i % 2],
                details={"tier": "nbdc-high"},
            ).to_dict()
        )
    for _ in range(5):
        events.append(sample_event().to_dict())  # auth.factor.failed
    events.append(
        sample_event(action="auth.lockout", details={"failures": 5}, outcome="denied").to_dict()
    )
    events.append(
        sample_event(
            action="export.approved",
            outcome="success",
            details={"request_id": "EXP-1", "reviewer": "officer@x.example"},
        ).to_dict()
    )
    r = httpx.post(
        sp.url + "/v1/events",
        content=orjson.dumps({"events": events}),
        headers={"Authorization": f"Bearer {env.tokens['portal']}"},
    )
    assert r.status_code == 200, r.text
    return events


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServiceProcess, AuditEnv, list[dict[str, Any]]]]:
    env = make_audit_env(tmp_path / "audit")
    sp = ServiceProcess(env).start()
    try:
        yield sp, env, _seed(sp, env)
    finally:
        sp.stop()


def test_officer_ui_end_to_end(served: Any, page: Any, browser_context: Any) -> None:
    sp, env, events = served
    base = sp.browser_url
    csp_violations: list[str] = []
    page.on(
        "console", lambda m: csp_violations.append(m.text) if "Content Security" in m.text else None
    )

    # 1. no open access: the UI sends an anonymous visitor to the login form
    resp = page.goto(base + "/ui/")
    assert page.url == base + "/ui/login"
    headers = resp.all_headers()
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"

    # 2. a wrong token is refused (and says so)
    page.fill("#token", "not-the-token-" + "x" * 30)
    page.click("#login")
    assert page.locator(".error").inner_text().startswith("That token is not valid")

    # 3. the bootstrap token gives a session cookie: Secure, HttpOnly, SameSite=Strict
    page.fill("#token", env.officer_token)
    page.click("#login")
    page.wait_for_url(base + "/ui/")
    cookies = {c["name"]: c for c in browser_context.cookies()}
    sess = cookies["__Host-enclave_audit"]
    assert (sess["secure"], sess["httpOnly"], sess["sameSite"]) == (True, True, "Strict")
    assert env.officer_token not in page.url

    # 4. the overview: four server-rendered charts, today's sessions counted by enclave
    assert page.locator("figure.chart svg").count() == 4
    first_chart = page.locator("figure.chart").first.inner_html()
    assert "gut-microbiome-2026 (15)" in first_chart
    assert "cohort-wgs (15)" in first_chart

    # 5. search by actor
    page.click("text=Search")
    page.fill("input[name=actor]", "k.sato@tohoku.example")
    page.click("#apply")
    rows = page.locator("table.events tbody tr")
    # the click navigates: wait (with Playwright's deadline) for the results page's rows,
    # never count the old page's
    expect(rows).to_have_count(10)
    assert set(page.locator("table.events tbody tr td:nth-child(4)").all_inner_texts()) == {
        "k.sato@tohoku.example"
    }

    # 6. the per-researcher timeline
    page.locator("table.events tbody tr td:nth-child(4) a").first.click()
    expect(page.locator("h1")).to_have_text(re.compile(r"k\.sato@tohoku\.example$"))
    expect(page.locator("ol.timeline li")).to_have_count(10)

    # 7. an event page: the proof and the checkpoint signature are checked in the browser
    page.locator("ol.timeline li a").first.click()
    page.wait_for_selector("#proof-result[data-verified]")
    assert page.locator("#proof-result").get_attribute("data-verified") == "true"
    page.wait_for_selector("#sig-result[data-verified]")
    assert page.locator("#sig-result").get_attribute("data-verified") == "true"
    assert page.locator("#server-result").get_attribute("class") == "ok"
    # the in-browser checks can fail: a flipped entry byte, and a checkpoint whose
    # signed text was altered, are both refused by the same functions
    tampered = page.evaluate(
        r"""async () => {
          const d = document.getElementById("proof").dataset;
          const entry = b64decode(d.entry); entry[5] ^= 1;
          const hashes = d.hashes.split(" ").filter((h) => h).map(b64decode);
          const proof = await verifyInclusion(entry, Number(d.index), Number(d.size),
                                              hashes, b64decode(d.root));
          const text = document.getElementById("checkpoint-text").textContent;
          const lines = text.split("\n");
          lines[1] = String(Number(lines[1]) + 1);
          const forged = lines.join("\n");
          return [proof, await verifyNote(forged, d.vkey), await verifyNote(text, d.vkey)];
        }"""
    )
    assert tampered == [False, False, True]

    # 8. verify the whole log now, with progress
    page.click("text=Verify")
    page.click("#verify-now")
    page.wait_for_selector("#verify-result[data-verified]", timeout=60_000)
    assert page.locator("#verify-result").get_attribute("data-verified") == "true", page.locator(
        "#verify-result"
    ).inner_text()
    bar = page.locator("#verify-progress")
    assert bar.get_attribute("value") == bar.get_attribute("max")
    assert int(bar.get_attribute("max")) >= len(events)

    # 9. the checkpoint history, and signing one on demand (a CSRF-protected form)
    page.click("text=Checkpoints")
    before = page.locator("table.checkpoints tbody tr").count()
    page.click("#publish")
    page.wait_for_url(base + "/ui/checkpoints")
    assert page.locator("table.checkpoints tbody tr").count() >= before
    assert page.locator("#vkey").inner_text().startswith("audit.test.example/log+")

    # 10. Japanese labels
    page.click("a.lang")
    assert page.locator("html").get_attribute("lang") == "ja"
    assert "チェックポイント" in page.locator("h1").inner_text()

    # 11. a form post without the CSRF token is refused
    r = page.request.post(base + "/ui/checkpoints", form={"csrf": "wrong"})
    assert r.status == 403

    assert csp_violations == []

    # 12. every officer read is itself in the log
    deadline = time.monotonic() + 10
    views: list[str] = []
    verified: list[Any] = []
    while time.monotonic() < deadline:
        with open_log(env.store_url) as log:
            rows = log.store.entries(0, log.sequenced())
        reads = [orjson.loads(r[-1]) for r in rows if r[6] == "audit.read"]
        views = [x["details"]["view"] for x in reads]
        verified = [orjson.loads(r[-1]) for r in rows if r[6] == "audit.verified"]
        if verified:
            break
        time.sleep(0.1)
    assert {"overview", "search", "timeline", "event", "checkpoints"} <= set(views)
    assert all(x["actor"] == "officer:bootstrap" and x["source"] == "audit" for x in reads)
    assert verified
    assert verified[0]["details"]["result"] == "ok"
