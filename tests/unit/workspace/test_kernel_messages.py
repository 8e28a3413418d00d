"""Which browser-to-kernel messages carry code to record, and which are dropped unread."""

from __future__ import annotations

import json

import pytest
from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1

from controller.workspace._kernelchannels import (
    UnreadableMessage,
    execute_request_code,
    v1_frame_error,
)


def legacy(msg_type: str, content: object) -> str:
    return json.dumps({"header": {"msg_type": msg_type}, "content": content, "channel": "shell"})


def test_execute_request_yields_its_code() -> None:
    assert execute_request_code(legacy("execute_request", {"code": "1+1"}), v1=False) == "1+1"


def test_other_messages_carry_no_code() -> None:
    assert execute_request_code(legacy("kernel_info_request", {}), v1=False) is None


@pytest.mark.parametrize(
    ("message", "v1"),
    [
        ("{not json", False),
        (legacy("execute_request", {"code": 42}), False),
        (b"\x03\x00\x00\x00\x00\x00\x00\x00garbage", True),
    ],
    ids=["broken_json", "execute_request_without_code_text", "truncated_v1_frame"],
)
def test_unreadable_message_is_dropped_not_forwarded_unrecorded(
    message: str | bytes, v1: bool
) -> None:
    with pytest.raises(UnreadableMessage):
        execute_request_code(message, v1=v1)


def _v1_frame(code: str) -> bytes:
    msg = {
        "header": {"msg_type": "execute_request", "msg_id": "1"},
        "parent_header": {},
        "metadata": {},
        "content": {"code": code},
    }
    return serialize_msg_to_ws_v1(msg, "shell", lambda o: json.dumps(o).encode())  # type: ignore[no-any-return]


def test_a_well_formed_v1_frame_passes_the_offset_check_and_yields_its_code() -> None:
    frame = _v1_frame("x = 1")
    assert v1_frame_error(frame) is None
    assert execute_request_code(frame, v1=True) == "x = 1"


def _with_count(frame: bytes, count: int) -> bytes:
    return count.to_bytes(8, "little") + frame[8:]


@pytest.mark.parametrize(
    "crafted",
    [
        pytest.param(_with_count(_v1_frame("1"), 2**62), id="offset_count_2_to_the_62"),
        pytest.param(_with_count(_v1_frame("1"), 5), id="too_few_offsets"),
        pytest.param(
            _v1_frame("1")[:16] + (2**40).to_bytes(8, "little") + _v1_frame("1")[24:],
            id="offset_past_the_end",
        ),
        pytest.param(
            _v1_frame("1")[:8] + (10**6).to_bytes(8, "little") + _v1_frame("1")[16:],
            id="offsets_out_of_order",
        ),
    ],
)
def test_a_crafted_v1_offset_table_is_refused_before_jupyters_parser_reads_it(
    crafted: bytes,
) -> None:
    """Jupyter's deserializer builds a list as long as the count in the first 8 bytes
    says: 2**62 would stall the server and exhaust the host's memory. The frame is
    refused from its offset table alone, on every tier (the metered channels drop it)."""
    assert v1_frame_error(crafted) is not None
    with pytest.raises(UnreadableMessage, match="v1 kernel message"):
        execute_request_code(crafted, v1=True)
