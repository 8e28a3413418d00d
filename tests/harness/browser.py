"""Real Chromium for browser tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

Fixtures (session-scoped browser, one fresh context + page per test):

- ``chromium``: a launched headless ``playwright.sync_api.Browser``;
- ``browser_context``: a new context (own cookies), closed after the test;
- ``page``: a page in that context, with a 15 s default timeout.

A missing Chromium or Playwright makes the test FAIL with what to install; it never
skips. Never ``playwright install``: it downloads a browser (RECIPES.md).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("ENCLAVE_CHROMIUM", "/usr/bin/chromium")


def _require_chromium() -> str:
    path = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
    if not path:
        pytest.fail(
            f"Chromium is missing ({CHROMIUM}); run `make setup` as root "
            "(apt-get install -y chromium)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an
    event loop running in the main thread while it lives, and every later test that
    calls ``asyncio.run`` would fail ("cannot be called from a running event loop")."""
    path = _require_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing; run `make setup`", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_context(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context(locale="en-US")
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(browser_context: Any) -> Any:
    pg = browser_context.new_page()
    pg.set_default_timeout(15_000)
    return pg
