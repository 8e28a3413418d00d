"""Real components for the workspace tests: the audit service, the portal, JupyterHub.

* ``audit_service``: ``python -m audit.service`` with a fresh store (tests/harness).
* ``portal``: ``python -m auth serve`` (``PortalProcess`` of the portal's e2e tests).
* ``start_hub``: one real JupyterHub configured by ``make_hub_config``: with
  configurable-http-proxy from npm and the idle culler's own process (as in a pod),
  or proxying and culling in its own process (as the local backend runs it).
* ``Browser``: an HTTP client that keeps cookies as a browser does on ``localhost``
  (a secure context: ``Secure`` cookies are sent over http://localhost).

A missing component FAILS with what to install; nothing is skipped.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyotp
import pytest

from audit import open_log
from audit.tokens import TokenStore
from controller.local import _proctree
from controller.workspace import EnclaveSpec, HubSite, Member, make_hub_config
from policies import load_catalog
from tests.e2e.auth.conftest import PortalProcess
from tests.harness.audit_service import AuditEnv, ServiceProcess, free_port, make_audit_env
from tests.harness.softkey import SoftKey
from tests.integration.auth.helpers import add_key

REPO = Path(__file__).resolve().parents[3]
CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
SINGLEUSER = "jupyterhub-singleuser"
PASSWORD = "ochre lantern gravel 41"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_TOTP = re.compile(r'<code id="totp-secret">([A-Z2-7]+)</code>')


class _LocalhostIsSecure(http.cookiejar.DefaultCookiePolicy):
    """Browsers treat http://localhost as a secure context; so does this jar."""

    def return_ok_secure(
        self, cookie: http.cookiejar.Cookie, request: urllib.request.Request
    ) -> bool:
        return request.host.split(":")[0] == "localhost" or super().return_ok_secure(
            cookie, request
        )


def browser() -> httpx.Client:
    """httpx copies cookies into a default jar for each request, so a request hook sets
    the Cookie header again from the client's jar, whose policy sends Secure cookies to
    localhost."""

    def send_cookies(request: httpx.Request) -> None:
        request.headers.pop("cookie", None)
        client.cookies.set_cookie_header(request)

    client = httpx.Client(
        follow_redirects=True, timeout=30, event_hooks={"request": [send_cookies]}
    )
    client.cookies.jar.set_policy(_LocalhostIsSecure())
    return client


def _csrf(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "no CSRF field on the page:\n" + html[:2000]
    return m.group(1)


def enrol(portal: PortalProcess, username: str, *, key: SoftKey | None = None) -> str:
    """Invite, set the password, enrol TOTP (its current step) and ``key`` if given (it
    then waits for an officer's approval); returns the TOTP secret."""
    r = portal.admin("POST", "/api/admin/users", json={"username": username})
    assert r.status_code == 201, r.text
    return accept_invitation(portal.base, r.json()["invitation_code"], key=key)


def accept_invitation(base: str, code: str, *, key: SoftKey | None = None) -> str:
    """At the portal ``base``: redeem ``code``, set PASSWORD, enrol TOTP and ``key`` if
    given; the TOTP secret."""
    with browser() as b:
        page = b.get(base + "/invite")
        page = b.post(base + "/invite", data={"csrf": _csrf(page.text), "code": code})
        page = b.post(
            base + "/invite/password",
            data={"csrf": _csrf(page.text), "password": PASSWORD, "password2": PASSWORD},
        )
        m = _TOTP.search(page.text)
        assert m, page.text[:2000]
        secret = m.group(1)
        page = b.post(
            base + "/enrol/totp",
            data={"csrf": _csrf(page.text), "code": pyotp.TOTP(secret).now()},
        )
        assert 'id="done"' in page.text, page.text[:2000]
        if key is not None:
            b.base_url = httpx.URL(base)
            add_key(b, key)
            page = b.get(base + "/enrol")
        b.post(base + "/enrol/done", data={"csrf": _csrf(page.text)})
    return secret


def sign_in_through_hub(
    b: httpx.Client,
    hub: str,
    username: str,
    secret: str,
    *,
    on_second_factor: Callable[[], object] = lambda: None,
) -> httpx.Response:
    """Start the hub's OAuth login and, when the portal asks, sign in with password + TOTP
    (the next TOTP step: codes are single-use), calling ``on_second_factor`` just before
    the TOTP code is submitted. Returns the final response."""
    r = b.get(hub + "/hub/oauth_login")
    if r.url.path.endswith("/login") and "csrf" in r.text:
        r = b.post(str(r.url), data={"csrf": _csrf(r.text), "username": username})
        r = b.post(
            str(r.url.copy_with(path="/login/password")),
            data={
                "csrf": _csrf(r.text),
                "password": PASSWORD,
            },
        )
        code = pyotp.TOTP(secret).at(int(time.time()) + 30)
        on_second_factor()
        r = b.post(
            str(r.url.copy_with(path="/login/totp")), data={"csrf": _csrf(r.text), "code": code}
        )
    return r


def start_lab(b: httpx.Client, hub: str, user: str, *, timeout: float = 180) -> dict[str, str]:
    """Signed in at ``hub``: start ``user``'s server through the hub's API (with the
    browser's ``_xsrf``) and poll until JupyterLab loads; the headers for more API calls."""
    xsrf = next(c.value for c in b.cookies.jar if c.name == "_xsrf")
    headers = {"X-XSRFToken": xsrf or ""}
    r = b.post(f"{hub}/hub/api/users/{user}/server", headers=headers)
    assert r.status_code in (201, 202), r.text
    deadline = time.monotonic() + timeout
    while (lab := b.get(f"{hub}/user/{user}/lab")).url.path != f"/user/{user}/lab":
        assert time.monotonic() < deadline, f"no JupyterLab: {lab.url} {lab.text[:500]}"
        time.sleep(0.5)  # poll interval
    assert lab.status_code == 200, lab.text[:500]
    return headers


def api_token(b: httpx.Client, hub: str, user: str, headers: dict[str, str]) -> str:
    """A hub API token of ``user``'s (for the proxied server's REST API and websockets)."""
    r = b.post(f"{hub}/hub/api/users/{user}/tokens", headers=headers, json={"expires_in": 3600})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


@pytest.fixture(scope="module")
def audit_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = make_audit_env(tmp_path_factory.mktemp("audit"), sources=())
    with ServiceProcess(env) as svc:
        yield svc


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalProcess]:
    p = PortalProcess(state=tmp_path_factory.mktemp("portal")).start()
    yield p
    p.stop()


def audit_events(env: AuditEnv, *, source: str) -> list[dict[str, Any]]:
    log = open_log(env.store_url)
    try:
        rows = log.store.entries(0, log.sequenced())
    finally:
        log.close()
    return [e for e in (orjson.loads(r[-1]) for r in rows) if e["source"] == source]


def wait_for_event(
    env: AuditEnv, *, source: str, match: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    """The first event of ``source`` that ``match``es, polled with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in audit_events(env, source=source) if match(e)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            seen = [(e["action"], e["actor"]) for e in audit_events(env, source=source)]
            raise AssertionError(f"no matching {source} event within {timeout} s; seen {seen}")
        time.sleep(0.1)  # poll interval


@dataclass
class Hub:
    name: str
    url: str
    state: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Stop the hub, then what of its tree is left: JupyterHub starts its proxy and
        idle culler in sessions of their own, and a hub that had to be SIGKILLed (or
        was slow to stop under load) left them running after the suite."""
        tree = _proctree.tree(self.proc.pid)
        stop_process(self.proc)
        left = _proctree.terminate(tree, grace_s=5.0)
        assert not left, f"processes of hub {self.name} that would not exit: {sorted(left)}"


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until_answers(
    proc: subprocess.Popen[bytes], url: str, *, log: Path, ok: tuple[int, ...] = (200,)
) -> None:
    """Poll ``url`` with a deadline until it answers one of ``ok``; fail with the log's
    tail if the process exits first."""
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited:\n" + log.read_text()[-4000:])
        try:
            if httpx.get(url, timeout=1).status_code in ok:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within 60 s")
        time.sleep(0.1)  # poll interval


def _secret(path: Path, value: str) -> None:
    path.write_text(value)
    path.chmod(0o600)


@pytest.fixture(scope="module")
def start_hub(
    portal: PortalProcess, audit_service: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Hub]]:
    """``start_hub(name, tier, members, bound)``: register the enclave (and its hub's
    client: bound to the enclave, or a plain client when ``bound`` is false) at the
    portal, then run its JupyterHub until the module ends."""
    if not CHP.exists():
        pytest.fail(f"{CHP} is missing: run 'make setup' (npm install)")
    hubs: list[Hub] = []
    catalog = load_catalog()

    def start(
        *,
        name: str,
        tier: str,
        members: list[str],
        bound: bool,
        spawner_class: str | None = None,
        workspace_token: bool = False,
        in_process: bool = False,
        idle_timeout_s: int | None = None,
    ) -> Hub:
        """``in_process``: the hub proxies and culls in its own process, started as the
        local backend starts it; ``idle_timeout_s``: the tier's idle limit, shortened."""
        state = tmp_path_factory.mktemp(f"hub-{name}")
        port = free_port()
        public = f"http://localhost:{port}"
        callback = public + "/hub/oauth_callback"
        body: dict[str, Any] = {
            "tier": tier,
            "members": [{"user": m} for m in members],
            "networks": ["127.0.0.0/8", "::1/128"],
        }
        if bound:
            body["client"] = {"client_id": f"hub-{name}", "redirect_uris": [callback]}
        r = portal.admin("PUT", f"/api/admin/enclaves/{name}", json=body)
        assert r.status_code == 200, r.text
        secret = r.json().get("client_secret")
        if not bound:
            r = portal.admin(
                "POST",
                "/api/admin/clients",
                json={"client_id": f"hub-{name}", "redirect_uris": [callback]},
            )
            assert r.status_code == 201, r.text
            secret = r.json()["client_secret"]
        token = TokenStore(path=audit_service.env.tokens_path).issue(
            source="hub", label=f"hub {name}", enclave=name
        )
        _secret(state / "client_secret", secret)
        _secret(state / "audit_token", token.token)
        _secret(state / "crypt_key", "5e" * 32)
        rules = catalog.get(tier)
        if idle_timeout_s is not None:
            session = rules.session.model_copy(update={"idle_timeout_s": idle_timeout_s})
            rules = rules.model_copy(update={"session": session})
        proxy: dict[str, Any] = (
            {"in_process": True, "cull_every_s": 10}
            if in_process
            else {"proxy_command": (str(CHP),), "proxy_api_port": free_port()}
        )
        cfg = make_hub_config(
            spec=EnclaveSpec(name=name, tier=tier, members=tuple(Member(user=m) for m in members)),
            tier=rules,
            site=HubSite(
                portal_url=portal.base,
                public_url=public,
                hub_api_port=free_port(),
                state_dir=state,
                audit_url=audit_service.url,
                python=sys.executable,
                **proxy,
                **({"spawner_class": spawner_class} if spawner_class else {}),
            ),
        )
        text = cfg.render()
        if workspace_token:
            # what the local backend will hand each workspace: its own intake token
            ws = TokenStore(path=audit_service.env.tokens_path).issue(
                source="workspace", label=f"workspace {name}", enclave=name
            )
            _secret(state / "workspace_token", ws.token)
            text += (
                "c.Spawner.args.extend(["
                f"'--EnclaveWorkspace.audit_token_file={state / 'workspace_token'}', "
                f"'--EnclaveWorkspace.audit_spool={state / 'workspace-spool.db'}', "
                "'--ServerApp.allow_root=True'])\n"
                f"c.Spawner.cmd = [{str(Path(sys.executable).parent / SINGLEUSER)!r}]\n"
                f"c.Spawner.environment = {{'PYTHONPATH': {str(REPO)!r}}}\n"
            )
        (state / "jupyterhub_config.py").write_text(text)
        log = (state / "hub.log").open("wb")
        command = (
            [sys.executable, "-m", "controller.workspace._hub"]
            if in_process
            else [str(Path(sys.executable).parent / "jupyterhub")]
        )
        proc = subprocess.Popen(
            [*command, "-f", "jupyterhub_config.py"],
            cwd=state,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        hub = Hub(name=name, url=public, state=state, proc=proc)
        hubs.append(hub)
        wait_until_answers(proc, public + "/hub/api", log=state / "hub.log")
        return hub

    yield start
    for hub in hubs:
        hub.stop()
