"""The screen meter: bytes sent to the browser against the tier's budget."""

from __future__ import annotations

import json

import pytest
from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1

from controller.workspace._kernelchannels import outgoing_message_kind
from controller.workspace._screen import ScreenDecision, ScreenMeter


def test_output_that_would_pass_the_budget_is_refused_and_so_is_all_later_output():
    meter = ScreenMeter(budget_bytes=100, warn_bytes=60)
    assert meter.offer(channel="kernel", size=50) == ScreenDecision(send=True)
    assert meter.offer(channel="contents", size=20) == ScreenDecision(send=True, warned=True)
    assert meter.offer(channel="kernel", size=40) == ScreenDecision(send=False, exceeded=True)
    # small output that would still fit is refused too: the budget is spent for the session
    assert meter.offer(channel="kernel", size=1) == ScreenDecision(send=False)
    assert meter.details() == {
        "kernel_bytes": 50,
        "contents_bytes": 20,
        "terminal_bytes": 0,
        "total_bytes": 70,
        "refused_bytes": 41,
        "refused_messages": 2,
        "warn_bytes": 60,
        "budget_bytes": 100,
    }


def test_protocol_messages_and_notices_are_counted_but_never_refused():
    meter = ScreenMeter(budget_bytes=100, warn_bytes=60)
    assert not meter.offer(channel="kernel", size=101).send
    assert meter.offer(channel="kernel", size=30, refusable=False).send
    assert meter.sent["kernel"] == 30


def test_protocol_messages_past_the_budget_are_refused_beyond_the_grace():
    # a kernel can send its data as many small "status" messages past the budget
    meter = ScreenMeter(budget_bytes=800, warn_bytes=600)
    assert meter.grace_bytes == 100
    assert meter.offer(channel="kernel", size=700).send
    assert not meter.offer(channel="kernel", size=200).send
    sent = sum(meter.offer(channel="kernel", size=30, refusable=False).send for _ in range(10))
    assert sent == 6  # up to 900 bytes in all: the budget and its grace
    assert meter.total == 880


def test_the_warning_comes_once():
    meter = ScreenMeter(budget_bytes=100, warn_bytes=10)
    assert meter.offer(channel="kernel", size=10).warned
    assert not meter.offer(channel="kernel", size=10).warned


@pytest.mark.parametrize(("budget", "warn"), [(100, 100), (100, 0), (0, 0)])
def test_a_meter_whose_warning_cannot_come_first_is_refused(budget, warn):
    with pytest.raises(ValueError, match="the warning must come before the budget"):
        ScreenMeter(budget_bytes=budget, warn_bytes=warn)


def _v1(channel: str, msg_type: str, parent_id: str) -> bytes:
    parts = [
        json.dumps({"msg_id": "m1", "msg_type": msg_type}).encode(),
        json.dumps({"msg_id": parent_id}).encode(),
        b"{}",
        json.dumps({"name": "stdout", "text": "genus\tP001\n"}).encode(),
    ]
    return serialize_msg_to_ws_v1(parts, channel)


def test_the_kind_of_each_message_to_the_browser_is_read_from_its_header():
    assert outgoing_message_kind(_v1("iopub", "stream", "p1"), v1=True) == (
        "iopub",
        "stream",
        {"msg_id": "p1"},
    )
    legacy = json.dumps(
        {"channel": "iopub", "header": {"msg_type": "status"}, "parent_header": {"msg_id": "p2"}}
    )
    assert outgoing_message_kind(legacy, v1=False) == ("iopub", "status", {"msg_id": "p2"})


@pytest.mark.parametrize("message", [b"", b"\xff" * 40, "not json", '{"channel": 1}'])
def test_a_message_that_does_not_parse_is_output_not_protocol(message):
    # it then counts against the budget and is refused past it, never waved through
    assert outgoing_message_kind(message, v1=isinstance(message, bytes)) == ("", "", {})
