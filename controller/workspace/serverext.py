"""The hardened single-user server: a Jupyter Server extension loaded in every workspace.

Enable it with ``--ServerApp.jpserver_extensions=controller.workspace.serverext=True``
and ``--ServerApp.reraise_server_extension_failures=True`` (so a workspace whose
extension cannot load does not start without it: fail closed); the hub's
configuration (``make_hub_config``) passes both. What it enforces, at the server:

1. Downloads refused on every path that returns file bytes as a file: ``/files/...``
   (with or without ``?download``) and ``/nbconvert/...`` are answered 403 by
   handlers placed before Jupyter Server's own; any other response that carries
   ``Content-Disposition: attachment`` is replaced by a 403 as its headers are
   written (an output transform sees every response of every handler); and the
   contents API refuses a dataset file's content when the file is larger than
   ``dataset_content_limit_bytes``.
2. ``Cache-Control: no-store`` on every response (the same output transform).
3. Terminals refused (403) where the tier turns them off; the hub also starts the
   server with ``--ServerApp.terminals_enabled=False`` there.
4. Contents events (get, save, create, rename, copy, delete, upload) and kernel
   starts and stops go to the audit intake with this workspace's token,
   ``source=workspace``; every refusal is recorded durably before it is answered.
5. Where the tier records every operation (``audited_operations.code_execution``),
   each execute_request is recorded durably (code capped at 8192 characters, the
   SHA-256 of all of it) before the kernel receives it; a request that cannot be
   recorded, or a kernel message that does not parse, is not forwarded.

6. The screen channel, measured: every message written to the browser on a kernel
   or terminal websocket and every contents API response body is counted where it
   is written
   (``_screen.ScreenMeter``) against the tier's ``screen_output`` budget; counts are
   recorded every ``screen_report_interval_s`` while they change and durably as the
   server stops; the warning and the budget are recorded as they are reached. Past
   the budget output is not sent (the researcher is told instead), and where the
   tier says ``stop_session`` the server stops.

This module wires the extension; the parts live beside it: ``_downloads`` (1-4:
the refusals, the cache header and the audited contents API), ``_kernelchannels``
(5, and 6 on the kernel websockets), ``_screenguard`` (6: the session's meter, the
terminal websocket and the records), ``_recorder`` (the settings and the events).

What it cannot do: what is shown on the screen within the budget reaches it, and
code in a kernel can read files without the contents API (TIERS.md). These events come from
a process the researcher's code shares, so officers weigh them as ``workspace``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import path_regex
from jupyter_server.utils import url_path_join
from tornado import web

from policies import load_catalog

from ._audit import open_audit_client
from ._downloads import (
    NOT_SUBRESOURCE,
    AuditedContentsHandler,
    DownloadRefusedHandler,
    NoDownloadTransform,
    TerminalsRefusedHandler,
)
from ._kernelchannels import MeteredChannelsConnection, RecordedChannelsConnection
from ._recorder import EnclaveWorkspace, Recorder, kernel_listener
from ._screenguard import MeteredTermSocket, ScreenGuard, report_screen_output

__all__ = ["EnclaveWorkspace"]

_KERNEL_SCHEMA = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"


def _prepend(web_app: web.Application, handlers: list[tuple[Any, ...]]) -> None:
    """Route ``handlers`` before every other handler, now and later (first match wins).

    ``add_handlers`` puts a host rule before Jupyter Server's own handlers but after
    the extensions loaded earlier, and later extensions' rules go before it again;
    so the new rule is moved to the front of the router, where later insertions
    (always just before the last, catch-all rule) cannot overtake it."""
    rules = web_app.default_router.rules
    before = {id(r) for r in rules}
    web_app.add_handlers(".*$", handlers)
    added = [r for r in rules if id(r) not in before]
    if not added:
        raise RuntimeError("the refusal handlers could not be routed; refusing to start")
    for rule in added:
        rules.remove(rule)
    rules[0:0] = added


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "controller.workspace.serverext"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    config = EnclaveWorkspace(parent=serverapp)
    for name in ("enclave", "tier", "audit_url", "audit_token_file", "audit_spool"):
        if not getattr(config, name):
            raise RuntimeError(f"EnclaveWorkspace.{name} is not set; the workspace cannot start")
    catalog = load_catalog(overlay=config.tier_overlay or None)
    tier = catalog.get(config.tier)
    owner = os.environ.get("JUPYTERHUB_USER", "workspace")
    client = open_audit_client(
        url=config.audit_url,
        token_file=Path(config.audit_token_file),
        spool=Path(config.audit_spool),
        source="workspace",
    )
    recorder = Recorder(config=config, client=client, owner=owner)
    web_app = serverapp.web_app
    web_app.settings["enclave_recorder"] = recorder
    web_app.settings["enclave_config"] = config
    base = web_app.settings["base_url"]
    handlers: list[tuple[Any, ...]] = [
        (url_path_join(base, r"/files/(.*)"), DownloadRefusedHandler, {"route": "files"}),
        (url_path_join(base, r"/nbconvert/(.*)"), DownloadRefusedHandler, {"route": "nbconvert"}),
        # not ``.../checkpoints[/ID]`` or ``.../trust``: Jupyter Server routes those to
        # their own handlers before its contents route, and so must this one
        (
            url_path_join(base, "/api/contents" + NOT_SUBRESOURCE + path_regex),
            AuditedContentsHandler,
        ),
    ]
    if not tier.terminals.enabled:
        handlers += [
            (url_path_join(base, r"/terminals/(.*)"), TerminalsRefusedHandler),
            (url_path_join(base, r"/api/terminals(.*)"), TerminalsRefusedHandler),
        ]
    else:  # before the terminals extension's own route: its output is counted too
        handlers.append((url_path_join(base, r"/terminals/websocket/(\w+)"), MeteredTermSocket))
    _prepend(web_app, handlers)
    guard = ScreenGuard(tier=tier, recorder=recorder, stop_server=serverapp.stop, log=serverapp.log)
    web_app.settings["enclave_screen"] = guard
    web_app.settings["kernel_websocket_connection_class"] = (
        RecordedChannelsConnection
        if tier.audited_operations.code_execution
        else MeteredChannelsConnection
    )
    report_screen_output(serverapp, guard, interval_s=config.screen_report_interval_s)
    NoDownloadTransform.recorder = recorder
    web_app.transforms.insert(0, NoDownloadTransform)
    serverapp.event_logger.add_listener(
        schema_id=_KERNEL_SCHEMA, listener=kernel_listener(recorder)
    )
    serverapp.log.info(
        "Enclave workspace %s (%s): downloads refused, terminals %s, screen budget %d bytes "
        "(%s past it), events to %s",
        config.enclave,
        tier.id,
        "on" if tier.terminals.enabled else "off",
        tier.screen_output.budget_bytes,
        tier.screen_output.past_budget.value,
        config.audit_url,
    )
