"""Kernel channels under the tier: their output metered, their code recorded.

``MeteredChannelsConnection`` counts every message written to the browser on a
kernel's websocket against the session's screen-output budget (``ScreenGuard``);
``RecordedChannelsConnection`` also records each execute_request durably before the
kernel gets it (tiers with ``audited_operations.code_execution``). The parsers
(``execute_request_code``, ``outgoing_message_kind``) read messages of either
websocket protocol without trusting them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado.websocket import WebSocketClosedError

from audit.client import ClientError

from ._recorder import Recorder
from ._screenguard import SCREEN_STILL_REFUSED, ScreenGuard
from .errors import WorkspaceError

__all__ = [
    "MeteredChannelsConnection",
    "RecordedChannelsConnection",
    "UnreadableMessage",
    "execute_request_code",
    "outgoing_message_kind",
    "v1_frame_error",
]

_V1 = "v1.kernel.websocket.jupyter.org"
_CODE_CAP = 8192
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


class UnreadableMessage(WorkspaceError):
    """A kernel message this server cannot parse: it is not forwarded."""


def execute_request_code(message: str | bytes, *, v1: bool) -> str | None:
    """The code of an ``execute_request`` from the browser, None for other messages.

    Raises :class:`UnreadableMessage` for a message whose header or content does not parse
    (it is then dropped, never forwarded unrecorded)."""
    try:
        if v1:
            error = v1_frame_error(message)
            if error is not None:
                raise UnreadableMessage(error)
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
        raise UnreadableMessage(str(e)[:200]) from None
    if not isinstance(header, dict) or header.get("msg_type") != "execute_request":
        return None
    code = content.get("code") if isinstance(content, dict) else None
    if not isinstance(code, str):
        raise UnreadableMessage("an execute_request without code")
    return code


#: Most offsets a v1 frame may declare: channel, header, parent, metadata, content, end
#: (6) plus binary buffers. Jupyter's own parser trusts the count in the first 8 bytes
#: and builds a list that long, so a crafted count could stall the server and exhaust
#: the memory of the host it shares with other enclaves.
_V1_MAX_OFFSETS = 1024


def v1_frame_error(message: str | bytes) -> str | None:
    """Why ``message`` is not a well-formed v1 kernel websocket frame, or None.

    Checks the offset table only (count within bounds, offsets in order, inside the
    frame), before anything parses the frame."""
    if not isinstance(message, bytes):
        return "a v1 kernel message is binary"
    count = int.from_bytes(message[:8], "little")  # offsets: channel, 4+ parts, end
    if not 6 <= count <= _V1_MAX_OFFSETS or len(message) < 8 * (count + 1):
        return "not a v1 kernel message: its offset table is malformed"
    offsets = [int.from_bytes(message[8 * i : 8 * (i + 1)], "little") for i in range(1, count + 1)]
    if offsets != sorted(offsets) or offsets[0] < 8 * (count + 1) or offsets[-1] > len(message):
        return "not a v1 kernel message: its offsets point outside the frame"
    return None


def _v1_head(message: str | bytes) -> tuple[str, Any, Any]:
    """Channel, header and parent header of a v1 websocket message, read through its
    first offsets only (bounded: the content is neither parsed nor copied)."""
    error = v1_frame_error(message)
    if error is not None:
        raise ValueError(error)
    assert isinstance(message, bytes)
    offsets = [int.from_bytes(message[8 * i : 8 * (i + 1)], "little") for i in range(1, 5)]
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

    def handle_incoming_message(self, incoming_msg: str) -> None:
        # a malformed v1 frame never reaches Jupyter's parser (see v1_frame_error)
        if self.subprotocol == _V1:
            error = v1_frame_error(incoming_msg)
            if error is not None:
                self.log.warning("dropped a kernel message from the browser: %s", error)
                return
        super().handle_incoming_message(incoming_msg)

    def write_message(self, message: str | bytes, binary: bool = False) -> Any:
        # replaces the parent's alias of the websocket handler's write_message: every
        # write to the browser (kernel output, replies, status) goes through here
        guard: ScreenGuard = self.websocket_handler.settings["enclave_screen"]
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
            text = notice or SCREEN_STILL_REFUSED
            told = self._tell("iopub", "stream", {"name": "stderr", "text": text}, parent)
        if msg_type == "execute_reply":
            content: dict[str, Any] = {
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
        guard: ScreenGuard = self.websocket_handler.settings["enclave_screen"]
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
        except UnreadableMessage as e:
            self.log.warning("dropped an unreadable kernel message: %s", e)
            return
        if code is not None:
            recorder: Recorder = self.websocket_handler.settings["enclave_recorder"]
            raw = code.encode("utf-8", "surrogatepass")
            try:
                recorder.kept(
                    "workspace.code.executed",
                    actor=None,
                    ip=self.websocket_handler.request.remote_ip,
                    kernel_id=str(self.kernel_id)[:128],
                    code=code[:_CODE_CAP],
                    sha256=hashlib.sha256(raw).hexdigest(),
                    bytes=len(raw),
                )
            except ClientError as e:
                self.log.error("an execute_request was not run: it could not be recorded: %s", e)
                return
        super().handle_incoming_message(incoming_msg)
