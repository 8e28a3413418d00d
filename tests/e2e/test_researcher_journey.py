"""Issue #15's journey in real Chromium, against ``enclave demo`` (every component real).

The demo researcher redeems the printed invitation (password + TOTP), enters
``demo-nbdc-standard`` through the portal, gets JupyterLab from the sandboxed server,
runs a notebook cell that reads the dataset and prints a statistic; downloads through
``/files/...?download=1`` and nbconvert are refused (403), JupyterLab offers no
download menu item, and JupyterLab's own download command, run from the page with
the UI's hiding undone (as a researcher can, in their own browser), gets the browser
no file. The server is stopped through the hub API. The demo officer redeems the
officer invitation, signs in to the audit UI through the portal ("Sign in with the
portal", password + TOTP, as the demo prints), and finds, in order: the hub login
with its factors, the server start, the file access, the refused downloads, the
bytes the session showed (the final ``workspace.screen_output``, recorded as the
server stops) and the server stop. ``enclave audit verify`` passes.

The dataset is read by the kernel (``open()``), which the workspace cannot see
(``workspace.file.get`` ``cannot_capture``); the file access on the record is the
notebook's own, read through the contents API as JupyterLab opens it.
"""

from __future__ import annotations

import re
import statistics
import time
from typing import Any
from urllib.parse import unquote, urlencode

import orjson
import pytest
from playwright.sync_api import expect

from controller._demo import DEMO_OFFICER, DEMO_USER
from tests.e2e.demo_process import DemoRun, running_demo, verify_log
from tests.e2e.portal_pages import redeem_invitation, sign_in
from tests.harness.local_hub import shared_state_dir

pytestmark = pytest.mark.browser
PASSWORD = "granite harbour kettle 58"
ENCLAVE = "demo-nbdc-standard"
DATASET = "/data/microbiome-16s/genus_abundance.tsv"  # docs/demo.md: the mount inside
CELL = (
    "import csv, statistics; "
    f"rows = [r for r in csv.reader(open('{DATASET}'), delimiter='\\t') "
    "if not r[0].startswith('#')]; "
    "col = rows[0].index('Bacteroides'); "
    "print('mean Bacteroides', round(statistics.mean(float(r[col]) for r in rows[1:]), 4), "
    "'n', len(rows) - 1)"
)
# what the officer must find, in this order, among the researcher's events in the enclave
JOURNEY = (
    "hub.login.allowed",
    "hub.server.started",
    "workspace.file.get",
    "workspace.download.refused",  # /files/...?download=1
    "workspace.download.refused",  # nbconvert
    "workspace.download.refused",  # JupyterLab's download command
    "workspace.screen_output",  # the bytes shown, recorded as the server stops
    "hub.server.stopped",
)
#: The page config the lab is served with, as a researcher can rewrite it in their own
#: browser: the app exposed to scripts, the hidden download commands back.
UNHIDDEN = {
    "@jupyterlab/docmanager-extension:download",
    "@jupyterlab/filebrowser-extension:download",
}


def _expected_statistic(demo: DemoRun) -> str:
    """The same statistic, computed here from the host's copy of the dataset."""
    path = demo.state / "datasets" / "demo-microbiome-16s-v1" / "genus_abundance.tsv"
    lines = [ln.split("\t") for ln in path.read_text().splitlines() if not ln.startswith("#")]
    col = lines[0].index("Bacteroides")
    mean = round(statistics.mean(float(r[col]) for r in lines[1:]), 4)
    return f"mean Bacteroides {mean} n {len(lines) - 1}"


def test_researcher_works_next_to_the_data_and_the_officer_sees_it_all(chromium: Any) -> None:
    with shared_state_dir() as root:  # the sandboxes' host user must reach it (o+x)
        with running_demo(root / "demo") as demo:
            _researcher(chromium, demo)
            _officer(chromium, demo)
        verify_log(demo.store)


def _unhide_downloads(route: Any) -> None:
    """Serve the lab page with the app exposed and the download plugins enabled."""
    if route.request.resource_type != "document":
        route.continue_()
        return
    response = route.fetch()
    html = response.text()
    pattern = re.compile(
        r'(<script id="jupyter-config-data" type="application/json">)(.*?)(</script>)', re.S
    )
    found = pattern.search(html)
    assert found, html[:2000]
    config = orjson.loads(found.group(2))
    config["exposeAppInBrowser"] = True
    disabled = config.get("disabledExtensions", [])
    if isinstance(disabled, dict):  # {name: true} is the other form a page config takes
        disabled = [name for name, off in disabled.items() if off]
    assert set(disabled) >= UNHIDDEN, disabled  # what the server's page config hides
    config["disabledExtensions"] = [x for x in disabled if x not in UNHIDDEN]
    body = found.group(1) + orjson.dumps(config).decode() + found.group(3)
    route.fulfill(response=response, body=html[: found.start()] + body + html[found.end() :])


def _download_with_the_labs_own_command(page: Any, notebook: str) -> None:
    """JupyterLab's download command, run from the page: the browser gets no file."""
    page.route(re.compile(r".*/lab(/.*)?([?].*)?$"), _unhide_downloads)
    page.reload()
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.commands.hasCommand('docmanager:download')",
        timeout=120_000,
    )
    page.evaluate("path => window.jupyterapp.commands.execute('docmanager:open', {path})", notebook)
    # the command acts on the current document: wait until the opened one is current
    # (ci85 ran it before, and the command did nothing, so no download event came)
    page.wait_for_function(
        "() => window.jupyterapp.commands.isEnabled('docmanager:download')", timeout=60_000
    )
    with page.expect_download() as download:
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:download')")
    assert download.value.failure() is not None, download.value.url
    page.unroute(re.compile(r".*/lab(/.*)?([?].*)?$"))


def _researcher(chromium: Any, demo: DemoRun) -> None:
    ctx = chromium.new_context(locale="en-US")
    try:
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        # 1. redeem the printed invitation: password, then TOTP from the secret shown
        secret = redeem_invitation(
            page, portal=demo.portal, code=demo.invitation_code, password=PASSWORD
        )
        # 2. enter the enclave: the hub sends the researcher to the portal to sign in
        hub = demo.hubs[ENCLAVE]
        page.goto(hub + "/hub/oauth_login")
        sign_in(page, portal=demo.portal, user=DEMO_USER, password=PASSWORD, secret=secret)
        page.wait_for_url(hub + "/hub/**")
        # 3. start the server; JupyterLab loads from the sandbox
        page.goto(hub + "/hub/spawn")
        page.wait_for_selector(".jp-Launcher", timeout=240_000)
        server = page.url.split("/lab")[0]  # .../user/<name>
        # 4. a notebook whose cell reads the dataset and prints a statistic
        page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
        page.wait_for_url(re.compile(r".*/lab/tree/.+\.ipynb$"))
        notebook = unquote(page.url.rsplit("/lab/tree/", 1)[1])
        # the kernel is up (the status bar says so), then the cell is edited and run
        idle = page.get_by_role("button", name=re.compile(r"\| Idle$"))
        expect(idle).to_be_visible(timeout=120_000)
        editor = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content").first
        editor.click()
        expect(page.locator(".jp-Notebook.jp-mod-editMode")).to_have_count(1)
        page.keyboard.insert_text(CELL)  # no key events: no bracket auto-closing
        expect(editor).to_contain_text("Bacteroides")
        page.keyboard.press("Shift+Enter")
        expect(page.locator(".jp-OutputArea-output").first).to_contain_text(
            _expected_statistic(demo), timeout=120_000
        )
        # 5. downloads are refused at the server ...
        r = page.request.get(f"{server}/files/{notebook}?download=1")
        assert r.status == 403, r.text()[:500]
        r = page.request.get(f"{server}/nbconvert/html/{notebook}?download=true")
        assert r.status == 403, r.text()[:500]
        # ... and the UI offers none: the File menu has no Download item
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
        menu = page.locator(".lm-Menu").first
        expect(menu).to_be_visible()
        labels = menu.locator(".lm-Menu-itemLabel").all_inner_texts()
        assert labels, "the File menu is empty"
        assert not [x for x in labels if "Download" in x or "Export" in x], labels
        page.keyboard.press("Escape")
        # ... and JupyterLab's own download command, with the hiding undone, gets no file
        _download_with_the_labs_own_command(page, notebook)
        # 6. stop the server through the hub API
        xsrf = next(c["value"] for c in ctx.cookies(hub + "/hub/") if c["name"] == "_xsrf")
        api = f"{hub}/hub/api/users/{DEMO_USER}"
        r = page.request.delete(api + "/server", headers={"X-XSRFToken": xsrf})
        assert r.status in (202, 204), r.text()[:500]
        deadline = time.monotonic() + 120
        while page.request.get(api, headers={"X-XSRFToken": xsrf}).json()["servers"]:
            assert time.monotonic() < deadline, "the server did not stop within 120 s"
            time.sleep(0.5)  # poll interval
    finally:
        ctx.close()


def _officer(chromium: Any, demo: DemoRun) -> None:
    ctx = chromium.new_context(locale="en-US")
    try:
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        # the demo officer enrols with the printed invitation, then signs in to the
        # audit UI through the portal, as the demo's instructions say
        secret = redeem_invitation(
            page, portal=demo.portal, code=demo.officer_invitation_code, password=PASSWORD
        )
        ui = demo.audit + "/ui"
        page.goto(ui + "/login")
        page.click("#login-portal")
        sign_in(page, portal=demo.portal, user=DEMO_OFFICER, password=PASSWORD, secret=secret)
        page.wait_for_url(ui + "/")
        assert page.inner_text(".who") == DEMO_OFFICER
        query = {"actor": DEMO_USER, "enclave": ENCLAVE, "order": "asc"}
        page.goto(ui + "/search?" + urlencode(query))
        actions: list[str] = []
        links: dict[str, str] = {}
        while True:  # every page of results, oldest first
            rows = page.locator("table.events tbody tr")
            for i in range(rows.count()):
                action = rows.nth(i).locator("td:nth-child(5)").inner_text()
                actions.append(action)
                link = rows.nth(i).locator("td:nth-child(1) a").get_attribute("href")
                links.setdefault(action, str(link))
            more = page.locator("a#next")
            if more.count() == 0:
                break
            page.goto(demo.audit + str(more.get_attribute("href")))
        it = iter(actions)
        missing = [a for a in JOURNEY if a not in it]  # in order: a subsequence
        assert not missing, f"{missing} not found in order in {actions}"
        # the login, with its factors
        page.goto(demo.audit + links["hub.login.allowed"])
        details = orjson.loads(page.locator("dd pre").first.inner_text())
        assert set(details["categories"]) == {"knowledge", "possession"}, details
        assert details["amr"], details
        # the bytes the session showed: the notebook's output among them
        page.goto(demo.audit + links["workspace.screen_output"])
        details = orjson.loads(page.locator("dd pre").first.inner_text())
        assert details["final"] is True, details
        assert details["kernel_bytes"] > 0, details
    finally:
        ctx.close()
