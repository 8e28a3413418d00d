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

What it cannot do: what is shown on the screen within the budget reaches it, and
code in a kernel can read files without the contents API (TIERS.md). These events come from
a process the researcher's code shares, so officers weigh them as ``workspace``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_server.base.handlers import JupyterHandler, path_regex
from jupyter_server.services.contents.handlers import ContentsHandler
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.utils import ensure_async, url_path_join
from jupyter_server_terminals.handlers import TermSocket
from tornado import httputil, ioloop, web
from tornado.websocket import WebSocketClosedError, WebSocketHandler
from traitlets import Int, List, TraitError, Unicode, validate
from traitlets.config import Configurable

from audit import Event
from audit.client import AuditClient, ClientError
from policies import ScreenOutputAction, Tier, load_catalog

from ._audit import open_audit_client
from ._screen import Channel, ScreenDecision, ScreenMeter

__all__ = ["EnclaveWorkspace"]

# a contents path that does not end in /checkpoints, /checkpoints/ID or /trust
_NOT_SUBRESOURCE = r"(?!(?:/[^/]+)*/(?:checkpoints(?:/[^/]+)?|trust)$)"
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
    tier_overlay = Unicode(
        "",
        config=True,
        help="The operator's tier overlay file (it can only tighten tiers), as the "
        "controller loads it; empty: the built-in catalog.",
    )
    screen_report_interval_s = Int(
        300,
        config=True,
        help="Seconds between the workspace.screen_output records of bytes sent to the "
        "browser (written only when the counts changed; one more as the server stops). "
        "Five minutes: an officer sees a session's screen traffic while it runs without "
        "one record per cell.",
    )

    @validate("screen_report_interval_s")
    def _positive_interval(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        if value < 1:
            raise TraitError(f"screen_report_interval_s must be at least 1 second, not {value}")
        return value


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

    def kept(self, action: str, *, actor: str | None, ip: str | None, **details: Any) -> None:
        """A success event recorded durably (``record``): raises ``ClientError`` if not."""
        self.client.record(self._event(action, "success", actor, ip, details))


def _bytes(n: int) -> str:
    return f"{n:,} bytes"


#: What the researcher is told will happen, and is happening, past the budget.
_PAST_BUDGET = {
    ScreenOutputAction.REFUSE_OUTPUT: (
        "further output will not be shown",
        "Further output of this session is not shown.",
    ),
    ScreenOutputAction.STOP_SESSION: (
        "the session will be stopped",
        "This session is being stopped.",
    ),
}


class _ScreenGuard:
    """This session's screen meter under the tier's ``screen_output`` control: the
    records an officer reads, the notices the researcher reads, and the stop."""

    def __init__(
        self,
        *,
        tier: Tier,
        recorder: _Recorder,
        stop_server: Callable[[], None],
        log: Any,
    ) -> None:
        control = tier.screen_output
        self.meter = ScreenMeter(budget_bytes=control.budget_bytes, warn_bytes=control.warn_bytes)
        self.past_budget = control.past_budget
        self.recorder = recorder
        self.stop_server = stop_server
        self.log = log
        self.stopping = False
        self._reported: tuple[int, ...] | None = None

    def _details(self, **extra: Any) -> dict[str, Any]:
        return {**self.meter.details(), "past_budget": self.past_budget.value, **extra}

    def _send(
        self, send: Callable[..., None], action: str, *, ip: str | None, **extra: Any
    ) -> None:
        # output is decided by the meter, not by the audit service: a record that cannot
        # be made is logged, and output past the budget stays refused all the same
        try:
            send(action, actor=None, ip=ip, **self._details(**extra))
        except ClientError as e:
            self.log.error("%s could not be recorded: %s", action, e)

    def report(self, *, final: bool = False) -> None:
        """Record the counts (periodically only when they changed; durably when final)."""
        snapshot = self.meter.snapshot()
        if not final and snapshot == self._reported:
            return
        self._reported = snapshot
        send = self.recorder.kept if final else self.recorder.done
        self._send(send, "workspace.screen_output", ip=None, final=final)

    def settle(self, decision: ScreenDecision, *, channel: Channel, ip: str | None) -> str | None:
        """Record the threshold ``decision`` crossed; the researcher's notice, if any."""
        sent, budget = _bytes(self.meter.total), _bytes(self.meter.budget_bytes)
        later, now = _PAST_BUDGET[self.past_budget]
        if decision.warned:
            self._send(self.recorder.done, "workspace.screen_output.warned", ip=ip)
            return (
                f"Enclave: this session has sent {sent} to your screen; its budget is "
                f"{budget}, after which {later}. The security officer can see these counts.\n"
            )
        if decision.exceeded:  # a refusal: recorded durably
            self._send(
                self.recorder.refused, "workspace.screen_output.exceeded", ip=ip, channel=channel
            )
            return (
                f"Enclave: screen-output budget reached. This session has sent {sent} to "
                f"your screen, and its budget in this enclave is {budget}. {now} The "
                "security officer has been notified.\n"
            )
        return None

    def stop_session(self) -> None:
        """Past the budget, where the tier says so: record the counts, stop the server."""
        if self.past_budget is not ScreenOutputAction.STOP_SESSION or self.stopping:
            return
        self.stopping = True
        self.log.warning("stopping: the session is past its screen-output budget")
        self.stop_server()  # the final record is written as the server stops


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


class MeteredTermSocket(TermSocket):
    """A terminal's websocket whose messages to the browser are counted as they are
    written, under the tier's ``screen_output`` budget: past it, the terminal's output
    is not written, the researcher is told once, and the server stops where the tier
    says ``stop_session``."""

    _told = False

    def initialize(self, **_: Any) -> None:  # type: ignore[override]
        # routed before the terminals extension has loaded: its manager, at request time
        super().initialize(
            name="jupyter_server_terminals", term_manager=self.settings["terminal_manager"]
        )

    def write_message(self, message: Any, binary: bool = False) -> None:  # type: ignore[override]
        guard: _ScreenGuard = self.settings["enclave_screen"]
        raw = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        try:
            kind = json.loads(raw)[0]
        except (ValueError, IndexError, KeyError, TypeError):
            kind = None  # output, as far as the budget is concerned
        decision = guard.meter.offer(
            channel="terminal", size=len(raw), refusable=kind not in ("setup", "disconnect")
        )
        notice = guard.settle(decision, channel="terminal", ip=self.request.remote_ip)
        if decision.send:
            super().write_message(message, binary=binary)
            if notice is not None:
                self._tell(notice)
            return
        if not self._told:
            self._told = True
            told = self._tell(notice or _SCREEN_STILL_REFUSED)
            if decision.exceeded and told is not None:
                told.add_done_callback(lambda _: guard.stop_session())
                return
        if decision.exceeded:
            guard.stop_session()

    def _tell(self, text: str) -> Any:
        """Write a notice of this server's own (counted, never refused); its future."""
        data = json.dumps(["stdout", "\r\n" + text.replace("\n", "\r\n")])
        guard: _ScreenGuard = self.settings["enclave_screen"]
        guard.meter.offer(channel="terminal", size=len(data.encode("utf-8")), refusable=False)
        try:
            return WebSocketHandler.write_message(self, data)
        except WebSocketClosedError:
            return None


class AuditedContentsHandler(ContentsHandler):
    """The contents API with its events recorded and dataset content capped."""

    _model: dict[str, Any] | None = None
    _metered = False
    _stop_after = False

    def _finish_model(self, model: dict[str, Any], location: bool = True) -> None:
        self._model = model
        self._metered = True  # the body finish() gets now is sent to the browser
        super()._finish_model(model, location=location)  # type: ignore[no-untyped-call]

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Any:
        """The model's body is counted as it is written; a read past the session's
        screen-output budget is refused instead (403 with the researcher's notice)."""
        if self._metered and isinstance(chunk, str | bytes):
            self._metered = False
            guard: _ScreenGuard = self.settings["enclave_screen"]
            size = len(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            decision = guard.meter.offer(
                channel="contents", size=size, refusable=self.request.method == "GET"
            )
            notice = guard.settle(decision, channel="contents", ip=self.request.remote_ip)
            if not decision.send:
                self._stop_after = True
                raise web.HTTPError(403, (notice or _SCREEN_STILL_REFUSED).strip())
        return super().finish(chunk)

    def on_finish(self) -> None:
        super().on_finish()
        if self._stop_after:
            self.settings["enclave_screen"].stop_session()

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
_SCREEN_STILL_REFUSED = (
    "Enclave: output not shown: this session's screen-output budget is reached.\n"
)
#: Kernel messages the browser needs to work that carry no output; past the budget they
#: are still sent (and counted) while they are no larger than ``_PROTOCOL_MAX`` bytes (a
#: kernel runs the researcher's code, which can send a "status" with anything in it).
_PROTOCOL_MAX = 8192
_PROTOCOL = frozenset(
    {
        ("iopub", "status"),
        ("shell", "kernel_info_reply"),
        ("control", "kernel_info_reply"),
        ("shell", "shutdown_reply"),
        ("control", "shutdown_reply"),
        ("control", "interrupt_reply"),
    }
)


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


def _v1_head(message: str | bytes) -> tuple[str, Any, Any]:
    """Channel, header and parent header of a v1 websocket message, read through its
    first offsets only (bounded: the content is neither parsed nor copied)."""
    if not isinstance(message, bytes):
        raise TypeError("a v1 message is binary")
    count = int.from_bytes(message[:8], "little")  # offsets: channel, 4+ parts, end
    if not 6 <= count <= 1024 or len(message) < 8 * (count + 1):
        raise ValueError("not a v1 kernel message")
    offsets = [int.from_bytes(message[8 * i : 8 * (i + 1)], "little") for i in range(1, 5)]
    if offsets != sorted(offsets) or offsets[-1] > len(message):
        raise ValueError("not a v1 kernel message")
    channel = message[offsets[0] : offsets[1]].decode("utf-8")
    header = json.loads(message[offsets[1] : offsets[2]])
    parent = json.loads(message[offsets[2] : offsets[3]])
    return channel, header, parent


def outgoing_message_kind(message: str | bytes, *, v1: bool) -> tuple[str, str, dict[str, Any]]:
    """(channel, msg_type, parent header) of a kernel message to the browser; empty
    strings and ``{}`` for one that does not parse (it is then treated as output)."""
    try:
        if v1:
            channel, header, parent = _v1_head(message)
        else:
            msg = (
                json.loads(message)
                if isinstance(message, str)
                else deserialize_binary_message(message)  # type: ignore[no-untyped-call]
            )
            channel, header, parent = msg.get("channel"), msg.get("header"), msg["parent_header"]
    except (ValueError, IndexError, TypeError, KeyError, UnicodeDecodeError, AttributeError):
        return "", "", {}
    if not (isinstance(channel, str) and isinstance(header, dict) and isinstance(parent, dict)):
        return "", "", {}
    return channel, str(header.get("msg_type", "")), parent


class MeteredChannelsConnection(ZMQChannelsWebsocketConnection):
    """Kernel channels whose every message to the browser is counted as it is written,
    under the tier's ``screen_output`` budget (:class:`_ScreenGuard`).

    Past the budget, output is not written: the researcher gets one notice in the cell
    whose output was refused (then a short one in each later cell), an execute_reply is
    replaced by an error reply without content so the cell finishes, and where the tier
    says ``stop_session`` the server stops once the notice is written."""

    _told: str | None = None

    def write_message(self, message: str | bytes, binary: bool = False) -> Any:
        # replaces the parent's alias of the websocket handler's write_message: every
        # write to the browser (kernel output, replies, status) goes through here
        guard: _ScreenGuard = self.websocket_handler.settings["enclave_screen"]
        raw = message.encode("utf-8", "surrogatepass") if isinstance(message, str) else message
        channel, msg_type, parent = outgoing_message_kind(message, v1=self.subprotocol == _V1)
        protocol = (channel, msg_type) in _PROTOCOL and len(raw) <= _PROTOCOL_MAX
        decision = guard.meter.offer(channel="kernel", size=len(raw), refusable=not protocol)
        notice = guard.settle(
            decision, channel="kernel", ip=self.websocket_handler.request.remote_ip
        )
        if decision.send:
            written = self.websocket_handler.write_message(message, binary=binary)
            if notice is not None:
                self._tell("iopub", "stream", {"name": "stderr", "text": notice}, parent)
            return written
        told = None
        parent_id = str(parent.get("msg_id", ""))
        if parent_id and self._told != parent_id:
            self._told = parent_id
            text = notice or _SCREEN_STILL_REFUSED
            told = self._tell("iopub", "stream", {"name": "stderr", "text": text}, parent)
        if msg_type == "execute_reply":
            content = {
                "status": "error",
                "ename": "ScreenOutputBudget",
                "evalue": "output not shown: the session's screen-output budget is reached",
                "traceback": [],
                "execution_count": None,
            }
            self._tell(channel, "execute_reply", content, parent)
        if decision.exceeded:
            if told is None:
                guard.stop_session()
            else:
                told.add_done_callback(lambda _: guard.stop_session())
        return None

    def _tell(
        self, channel: str, msg_type: str, content: dict[str, Any], parent: dict[str, Any]
    ) -> Any:
        """Write one message of this server's own to the browser (counted, never refused);
        the write's future, or None when the websocket is already closed."""
        guard: _ScreenGuard = self.websocket_handler.settings["enclave_screen"]
        msg = self.session.msg(msg_type, content=content, parent=parent or None)
        if self.subprotocol == _V1:
            data: str | bytes = serialize_msg_to_ws_v1(msg, channel, self.session.pack)  # type: ignore[no-untyped-call]
        else:
            msg["channel"] = channel
            data = json.dumps(msg, default=json_default)
        raw = data.encode("utf-8") if isinstance(data, str) else data
        guard.meter.offer(channel="kernel", size=len(raw), refusable=False)
        try:
            return self.websocket_handler.write_message(data, binary=isinstance(data, bytes))
        except WebSocketClosedError:
            return None


class RecordedChannelsConnection(MeteredChannelsConnection):
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


def _report_screen_output(serverapp: Any, guard: _ScreenGuard, *, interval_s: int) -> None:
    """Record the counts every ``interval_s`` while they change, and durably once as the
    server stops, before its kernels and websockets are shut down; then send what the
    spool holds, so a stopped session's counts are in the log (or in the spool, sent by
    the next start)."""
    ioloop.PeriodicCallback(guard.report, interval_s * 1000).start()
    cleanup = serverapp.cleanup_extensions  # the server's stop sequence calls it first

    async def cleanup_extensions() -> None:
        guard.report(final=True)
        if not guard.recorder.client.flush(timeout=10):
            serverapp.log.error("the audit spool was not emptied before the server stopped")
        await cleanup()

    serverapp.cleanup_extensions = cleanup_extensions


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
    recorder = _Recorder(config=config, client=client, owner=owner)
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
            url_path_join(base, "/api/contents" + _NOT_SUBRESOURCE + path_regex),
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
    guard = _ScreenGuard(
        tier=tier, recorder=recorder, stop_server=serverapp.stop, log=serverapp.log
    )
    web_app.settings["enclave_screen"] = guard
    web_app.settings["kernel_websocket_connection_class"] = (
        RecordedChannelsConnection
        if tier.audited_operations.code_execution
        else MeteredChannelsConnection
    )
    _report_screen_output(serverapp, guard, interval_s=config.screen_report_interval_s)
    _NoDownloadTransform.recorder = recorder
    web_app.transforms.insert(0, _NoDownloadTransform)
    serverapp.event_logger.add_listener(
        schema_id=_KERNEL_SCHEMA, listener=_kernel_listener(recorder)
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
