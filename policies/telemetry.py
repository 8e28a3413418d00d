"""Logging and metrics conventions shared by every Enclave component.

``configure_logging()`` is called once by each process entry point (the
``enclave`` CLI does it); library code only calls ``structlog.get_logger()``.
Output is JSON lines in production (no TTY, or ``ENCLAVE_LOG_FORMAT=json``) and a
readable console in a terminal. Secrets never go into log events: pass ids, never
tokens, passwords or keys.

Prometheus metric names are declared once here via :func:`metric_name`, which
enforces the ``enclave_<component>_`` prefix and Prometheus naming rules, so a
dashboard can rely on one naming scheme across all components.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Literal

import structlog

__all__ = ["COMPONENTS", "configure_logging", "metric_name"]

#: Components that may own metrics; the second word of every metric name.
COMPONENTS = frozenset({"audit", "portal", "controller", "hub", "workspace", "airlock", "policies"})

_NAME = re.compile(r"^[a-z][a-z0-9_]*[a-z0-9]$")
_UNIT_SUFFIXES = ("_total", "_seconds", "_bytes", "_events", "_entries", "_ratio", "_info")


def metric_name(component: str, name: str) -> str:
    """``enclave_<component>_<name>``, checked: lower snake case, a unit or _total suffix."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown metrics component {component!r}")
    if not _NAME.match(name) or "__" in name:
        raise ValueError(f"metric name {name!r} must be lower snake case")
    if not name.endswith(_UNIT_SUFFIXES):
        raise ValueError(f"metric name {name!r} must end with a unit or _total")
    return f"enclave_{component}_{name}"


def configure_logging(
    *, level: str = "info", fmt: Literal["auto", "json", "console"] = "auto"
) -> None:
    """Configure structlog and the standard library logging once per process."""
    chosen = os.environ.get("ENCLAVE_LOG_FORMAT", fmt)
    if chosen not in ("auto", "json", "console"):
        chosen = "auto"
    as_json = chosen == "json" or (chosen == "auto" and not sys.stderr.isatty())
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
