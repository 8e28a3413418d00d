"""Which browser-to-kernel messages carry code to record, and which are dropped unread."""

from __future__ import annotations

import json

import pytest

from controller.workspace._kernelchannels import UnreadableMessage, execute_request_code


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
