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

What it cannot do: anything a kernel prints reaches the screen, and code in a
kernel can read files without the contents API (TIERS.md). These events come from
a process the researcher's code shares, so officers weigh them as ``workspace``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

from jupyter_server.base.handlers import JupyterHandler, path_regex
from jupyter_server.services.contents.handlers import ContentsHandler
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.utils import ensure_async, url_path_join
from tornado import httputil, web
from traitlets import Int, List, Unicode
from traitlets.config import Configurable

from audit import Event
from audit.client import AuditClient, ClientError
from policies import load_catalog

from ._audit import open_audit_client

__all__ = ["EnclaveWorkspace"]

_KERNEL_SCHEMA = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
_REFUSED = (
    "Downloads are disabled in this enclave: data stays on the server. "
    "Ask for an export through the airlock instead."
)


class EnclaveWorkspace(Configurable):
    """The workspace's enclave, tier and audit intake (set by the hub's spawner)."""

    enclave = Unicode(config=True, help="The enclave this workspace belongs to.")
    tier = Unicode(config=True, help="The enclave's tier id in the policies catalog.")
    audit_url = Unicode(config=True, help="The audit service's base URL.")
    audit_token_file = Unicode(
        config=True, help="This workspace's intake token (source=workspace, its enclave), 0600."
    )
    audit_spool = Unicode(config=True, help="The audit client's durable spool file.")
    dataset_paths = List(
        Unicode(),
        config=True,
        help="Dataset mount points, relative to the server's root directory.",
    )
    dataset_content_limit_bytes = Int(
        1024 * 1024,
        config=True,
        help="Largest dataset file whose content the contents API returns (bytes). "
        "Not yet a catalog control: one value for every tier until it is.",
    )


class _Recorder:
    """Sends this workspace's events; ``refused`` is durable or raises ``ClientError``."""

    def __init__(self, *, config: EnclaveWorkspace, client: AuditClient, owner: str) -> None:
        self.config = config
        self.client = client
        self.owner = owner

    def _event(
        self, action: str, outcome: str, actor: str | None, ip: str | None, details: dict[str, Any]
    ) -> Event:
        return Event.new(
            source="workspace",
            actor=actor or self.owner,
            action=action,
            outcome=outcome,
            enclave=self.config.enclave,
            client_ip=ip,
            details=details,
        )

    def done(self, action: str, *, actor: str | None, ip: str | None, **details: Any) -> None:
        self.client.emit(self._event(action, "success", actor, ip, details))

    def refused(self, action: str, *, actor: str | None, ip: str | None, **details: Any) -> None:
        self.client.record(self._event(action, "denied", actor, ip, details))


def _clean(details: dict[str, Any]) -> dict[str, Any]:
    """Paths as the contents API names them: relative to the root, no leading slash."""
    return {
        k: v.strip("/")[:4096] if k in ("path", "new_path") and isinstance(v, str) else v
        for k, v in details.items()
    }


def _refuse(handler: JupyterHandler, action: str, **details: Any) -> None:
    """Record the refusal durably, then answer 403 (503 if it cannot be recorded)."""
    recorder: _Recorder = handler.settings["enclave_recorder"]
    details = _clean(details)
    try:
        recorder.refused(action, actor=None, ip=handler.request.remote_ip, **details)
    except ClientError as e:
        handler.log.error("a refusal could not be recorded: %s", e)
        raise web.HTTPError(503, "refused, and the refusal could not be recorded") from None
    raise web.HTTPError(403, _REFUSED if action == "workspace.download.refused" else "refused")


class DownloadRefusedHandler(JupyterHandler):
    """``/files/...`` and ``/nbconvert/...``: file bytes as a file, refused for every method."""

    def initialize(self, route: str) -> None:
        self.route = route

    @web.authenticated
    def get(self, path: str = "") -> None:
        _refuse(self, "workspace.download.refused", path=path[:4096], route=self.route)

    head = post = put = get


class TerminalsRefusedHandler(JupyterHandler):
    """Terminals where the tier turns them off: refused and recorded."""

    @web.authenticated
    def get(self, path: str = "") -> None:
        _refuse(self, "workspace.terminal.refused", path=self.request.path)

    post = put = delete = get


class AuditedContentsHandler(ContentsHandler):
    """The contents API with its events recorded and dataset content capped."""

    _model: dict[str, Any] | None = None

    def _finish_model(self, model: dict[str, Any], location: bool = True) -> None:
        self._model = model
        super()._finish_model(model, location=location)  # type: ignore[no-untyped-call]

    def _note(self, action: str, **details: Any) -> None:
        if self.get_status() < 400:
            recorder: _Recorder = self.settings["enclave_recorder"]
            recorder.done(action, actor=None, ip=self.request.remote_ip, **_clean(details))

    def _in_dataset(self, path: str) -> bool:
        config: EnclaveWorkspace = self.settings["enclave_config"]
        p = PurePosixPath("/", path.strip("/"))
        return any(
            p == (d := PurePosixPath("/", ds.strip("/"))) or d in p.parents
            for ds in config.dataset_paths
        )

    @web.authenticated
    async def get(self, path: str = "") -> None:
        path = (path or "").strip("/")
        wants_content = self.get_query_argument("content", default="1") != "0"
        if wants_content and self._in_dataset(path):
            meta = await ensure_async(self.contents_manager.get(path=path, content=False))  # type: ignore[no-untyped-call]
            limit = self.settings["enclave_config"].dataset_content_limit_bytes
            size = meta.get("size")
            if meta.get("type") != "directory" and (not isinstance(size, int) or size > limit):
                _refuse(
                    self,
                    "workspace.download.refused",
                    path=path[:4096],
                    route="contents",
                    reason=f"a dataset file over {limit} bytes",
                )
        await super().get(path)  # type: ignore[misc]
        model = self._model or {}
        if wants_content and model.get("type") in ("file", "notebook"):
            size = model.get("size")
            extra = {"bytes": size} if isinstance(size, int) else {}
            self._note("workspace.file.get", path=path[:4096], **extra)

    async def patch(self, path: str = "") -> None:
        path = path.strip("/")
        await super().patch(path)  # type: ignore[misc]
        new_path = str((self._model or {}).get("path", ""))
        self._note("workspace.file.renamed", path=path[:4096], new_path=new_path[:4096])

    async def _copy(self, copy_from: str, copy_to: str | None = None) -> None:
        await super()._copy(copy_from, copy_to)  # type: ignore[no-untyped-call]
        new_path = str((self._model or {}).get("path", ""))
        self._note("workspace.file.copied", path=copy_from[:4096], new_path=new_path[:4096])

    async def _new_untitled(self, path: str, type: str = "", ext: str = "") -> None:
        await super()._new_untitled(path, type=type, ext=ext)  # type: ignore[no-untyped-call]
        model = self._model or {}
        self._note(
            "workspace.file.created",
            path=str(model.get("path", path))[:4096],
            type=str(model.get("type", ""))[:32],
        )

    async def _upload(self, model: dict[str, Any], path: str) -> None:
        chunk = model.get("chunk")
        await super()._upload(model, path)  # type: ignore[no-untyped-call]
        if chunk not in (None, -1):
            return  # the first of several chunks: the last one records the upload
        if model.get("format") == "base64":
            self._note("workspace.file.uploaded", path=path[:4096], **self._size())
        else:
            self._note("workspace.file.created", path=path[:4096], type=str(model.get("type")))

    async def _save(self, model: dict[str, Any], path: str) -> None:
        chunk = model.get("chunk")
        await super()._save(model, path)  # type: ignore[no-untyped-call]
        if chunk is None:
            self._note("workspace.file.put", path=path[:4096], **self._size())
        elif chunk == -1:
            self._note("workspace.file.uploaded", path=path[:4096], **self._size())

    async def delete(self, path: str = "") -> None:
        path = path.strip("/")
        await super().delete(path)  # type: ignore[misc]
        self._note("workspace.file.delete", path=path[:4096])

    def _size(self) -> dict[str, int]:
        size = (self._model or {}).get("size")
        return {"bytes": size} if isinstance(size, int) else {}


class _NoDownloadTransform(web.OutputTransform):
    """Every response: ``Cache-Control: no-store``; an attachment becomes a recorded 403."""

    recorder: _Recorder | None = None

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        self.request = request
        self.refused = False

    def transform_first_chunk(
        self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, httputil.HTTPHeaders, bytes]:
        headers["Cache-Control"] = "no-store"
        disposition = headers.get("Content-Disposition", "")
        if "attachment" not in disposition.lower():
            return status_code, headers, chunk
        self.refused = True
        body = _REFUSED.encode()
        recorder = type(self).recorder
        try:
            if recorder is None:
                raise ClientError("no audit client")
            recorder.refused(
                "workspace.download.refused",
                actor=None,
                ip=self.request.remote_ip,
                path=self.request.path[:4096],
                route="attachment",
            )
            status = 403
        except ClientError:
            status = 503
        clean = httputil.HTTPHeaders()
        clean["Content-Type"] = "text/plain; charset=utf-8"
        clean["Content-Length"] = str(len(body))
        clean["Cache-Control"] = "no-store"
        return status, clean, body

    def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
        return b"" if self.refused else chunk


_V1 = "v1.kernel.websocket.jupyter.org"
_CODE_CAP = 8192


class _Unreadable(Exception):
    """A kernel message this server cannot parse: it is not forwarded."""


def execute_request_code(message: str | bytes, *, v1: bool) -> str | None:
    """The code of an ``execute_request`` from the browser, None for other messages.

    Raises :class:`_Unreadable` for a message whose header or content does not parse
    (it is then dropped, never forwarded unrecorded)."""
    try:
        if v1:
            _channel, parts = deserialize_msg_from_ws_v1(message)  # type: ignore[no-untyped-call]
            header, content = json.loads(parts[0]), json.loads(parts[3])
        else:
            msg = (
                json.loads(message)
                if isinstance(message, str)
                else (deserialize_binary_message(message))  # type: ignore[no-untyped-call]
            )
            header, content = msg.get("header"), msg.get("content")
    except (ValueError, IndexError, TypeError, UnicodeDecodeError) as e:
        raise _Unreadable(str(e)[:200]) from None
    if not isinstance(header, dict) or header.get("msg_type") != "execute_request":
        return None
    code = content.get("code") if isinstance(content, dict) else None
    if not isinstance(code, str):
        raise _Unreadable("an execute_request without code")
    return code


class RecordedChannelsConnection(ZMQChannelsWebsocketConnection):
    """Kernel channels that record each execute_request durably before the kernel gets it
    (tiers with ``audited_operations.code_execution``); unrecordable requests are dropped."""

    def handle_incoming_message(self, incoming_msg: str) -> None:
        try:
            code = execute_request_code(incoming_msg, v1=self.subprotocol == _V1)
        except _Unreadable as e:
            self.log.warning("dropped an unreadable kernel message: %s", e)
            return
        if code is not None:
            recorder: _Recorder = self.websocket_handler.settings["enclave_recorder"]
            raw = code.encode("utf-8", "surrogatepass")
            event = recorder._event(
                "workspace.code.executed",
                "success",
                None,
                self.websocket_handler.request.remote_ip,
                {
                    "kernel_id": str(self.kernel_id)[:128],
                    "code": code[:_CODE_CAP],
                    "sha256": hashlib.sha256(raw).hexdigest(),
                    "bytes": len(raw),
                },
            )
            try:
                recorder.client.record(event)
            except ClientError as e:
                self.log.error("an execute_request was not run: it could not be recorded: %s", e)
                return
        super().handle_incoming_message(incoming_msg)


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


def _kernel_listener(recorder: _Recorder) -> Callable[..., Awaitable[None]]:
    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        if data.get("status") != "success":
            return
        action = {"start": "workspace.kernel.started", "shutdown": "workspace.kernel.stopped"}
        name = action.get(str(data.get("action")))
        if name is None:
            return
        details = {"kernel_id": str(data.get("kernel_id", ""))[:128]}
        if name == "workspace.kernel.started":
            details["kernel"] = str(data.get("kernel_name", ""))[:128]
        recorder.done(name, actor=None, ip=None, **details)

    return listener


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "controller.workspace.serverext"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    config = EnclaveWorkspace(parent=serverapp)
    for name in ("enclave", "tier", "audit_url", "audit_token_file", "audit_spool"):
        if not getattr(config, name):
            raise RuntimeError(f"EnclaveWorkspace.{name} is not set; the workspace cannot start")
    tier = load_catalog().get(config.tier)
    owner = os.environ.get("JUPYTERHUB_USER", "workspace")
    client = open_audit_client(
        url=config.audit_url,
        token_file=Path(config.audit_token_file),
        spool=Path(config.audit_spool),
        source="workspace",
    )
    recorder = _Recorder(config=config, client=client, owner=owner)
    web_app = serverapp.web_app
    web_app.settings["enclave_recorder"] = recorder
    web_app.settings["enclave_config"] = config
    base = web_app.settings["base_url"]
    handlers: list[tuple[Any, ...]] = [
        (url_path_join(base, r"/files/(.*)"), DownloadRefusedHandler, {"route": "files"}),
        (url_path_join(base, r"/nbconvert/(.*)"), DownloadRefusedHandler, {"route": "nbconvert"}),
        (url_path_join(base, "/api/contents" + path_regex), AuditedContentsHandler),
    ]
    if not tier.terminals.enabled:
        handlers += [
            (url_path_join(base, r"/terminals/(.*)"), TerminalsRefusedHandler),
            (url_path_join(base, r"/api/terminals(.*)"), TerminalsRefusedHandler),
        ]
    _prepend(web_app, handlers)
    if tier.audited_operations.code_execution:
        web_app.settings["kernel_websocket_connection_class"] = RecordedChannelsConnection
    _NoDownloadTransform.recorder = recorder
    web_app.transforms.insert(0, _NoDownloadTransform)
    serverapp.event_logger.add_listener(
        schema_id=_KERNEL_SCHEMA, listener=_kernel_listener(recorder)
    )
    serverapp.log.info(
        "Enclave workspace %s (%s): downloads refused, terminals %s, events to %s",
        config.enclave,
        tier.id,
        "on" if tier.terminals.enabled else "off",
        config.audit_url,
    )
