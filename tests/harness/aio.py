"""Run a coroutine to completion from a synchronous test, whatever the main thread holds.

Playwright's sync API (the session-scoped browser of ``tests/harness/browser.py``) keeps
an event loop running in the main thread for the rest of the session, so a plain
``asyncio.run`` in a later test fails with "cannot be called from a running event
loop" depending on which tests ran first. This runs the coroutine on a thread of its
own with a fresh loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["run_coroutine"]


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on a thread of its own; its result or its exception."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-aio") as pool:
        return pool.submit(asyncio.run, coro).result()
