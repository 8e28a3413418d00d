"""Small helpers for the controller's integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_for(what: str, condition: Callable[[], bool], *, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)  # the poll interval; the deadline bounds the wait
