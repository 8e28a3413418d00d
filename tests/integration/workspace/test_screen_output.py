"""The screen channel, measured: bytes a real jupyter-server sends to the browser.

Each test starts its own ``jupyter-server`` with the hardened extension, a real
kernel and a real audit service; the tier's screen-output budget is tightened with
an operator overlay (tightening is all an overlay can do) so that a few hundred
kilobytes of output cross it. Records are polled from the audit store with a
deadline; nothing here depends on timing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.harness.aio import run_coroutine
from tests.harness.audit_service import ServiceProcess

from .conftest import audit_events, stop_process, wait_for_event
from .test_single_user_server import Server as Workspace
from .test_single_user_server import start_server  # noqa: F401 (the fixture, by name)

REPO = Path(__file__).resolve().parents[3]
BUDGET = 256 * 1024
WARN = 128 * 1024
BIG = 150_000  # one print: over the warning alone, past the budget twice
V1 = "v1.kernel.websocket.jupyter.org"


@pytest.fixture(scope="module")
def start_workspace(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Workspace]:
    """``start_workspace(enclave, tier)``: a jupyter-server whose tier's screen budget
    is tightened to ``BUDGET`` (warning at ``WARN``), reporting every second, with a
    large file outside the datasets (the download refusal does not apply to it)."""
    start_plain: Callable[..., Workspace] = request.getfixturevalue("start_server")

    def start(*, enclave: str, tier: str) -> Workspace:
        overlay = tmp_path_factory.mktemp(f"overlay-{enclave}") / "overlay.yaml"
        tightened = {"screen_output": {"budget_bytes": BUDGET, "warn_bytes": WARN}}
        overlay.write_text(json.dumps({"tiers": {tier: tightened}}))  # JSON is YAML
        ws = start_plain(
            enclave=enclave,
            tier=tier,
            more={
                "EnclaveWorkspace": {"tier_overlay": str(overlay), "screen_report_interval_s": 1},
                # the test's PATH holds only the venv: terminals need a shell named
                "ServerApp": {"terminado_settings": {"shell_command": ["/bin/sh"]}},
            },
        )
        (ws.root / "cohort_extract.csv").write_bytes(b"P0001,rs429358,CT\n" * (BIG // 18))
        return ws

    return start


@dataclass
class Cell:
    """What the browser received for one execute_request."""

    stdout: str = ""
    stderr: str = ""
    reply: dict[str, Any] | None = None
    idle: bool = False
    closed: bool = False
    types: list[str] = field(default_factory=list)
    raw: bytes = b""  # every message of this cell, as received


class Notebook:
    """A kernel's websocket as JupyterLab opens it (the v1 binary protocol): one
    connection per cell here, each in its own event loop (``run_coroutine``)."""

    def __init__(self, ws: Workspace, kernel_id: str) -> None:
        self.ws, self.kernel_id = ws, kernel_id

    def run(self, code: str, *, sent_before: bytes | None = None) -> Cell:
        """Execute ``code``; collect until its reply and idle status, or the socket closes.
        ``sent_before``: a raw frame written on the same socket first."""

        async def go() -> Cell:
            url = self.ws.url.replace("http", "ws") + f"/api/kernels/{self.kernel_id}/channels"
            conn = await websocket_connect(
                HTTPRequest(url, headers={"Authorization": f"token {self.ws.token}"}),
                subprotocols=[V1],
            )
            try:
                if sent_before is not None:
                    await conn.write_message(sent_before, binary=True)
                return await self._execute(conn, code)
            finally:
                conn.close()

        return run_coroutine(go())

    async def _execute(self, conn: WebSocketClientConnection, code: str) -> Cell:
        session = Session(username="r.tanaka")  # builds the message as a kernel client does
        request = session.msg("execute_request", {"code": code, "silent": False})
        msg_id = request["header"]["msg_id"]
        await conn.write_message(
            serialize_msg_to_ws_v1(request, "shell", session.pack), binary=True
        )
        cell = Cell()
        while not (cell.reply is not None and cell.idle):
            raw = await asyncio.wait_for(conn.read_message(), 120)  # a deadline only
            if raw is None:
                cell.closed = True
                return cell
            assert isinstance(raw, bytes)
            _channel, msg = deserialize_msg_from_ws_v1(raw)
            head, parent, body = json.loads(msg[0]), json.loads(msg[1]), json.loads(msg[3])
            if parent.get("msg_id") != msg_id:
                continue
            cell.types.append(head["msg_type"])
            cell.raw += raw
            if head["msg_type"] == "stream":
                if body["name"] == "stdout":
                    cell.stdout += body["text"]
                else:
                    cell.stderr += body["text"]
            elif head["msg_type"] == "execute_reply":
                cell.reply = body
            elif head["msg_type"] == "status" and body["execution_state"] == "idle":
                cell.idle = True
        return cell


def _start_kernel(ws: Workspace) -> Notebook:
    with ws.http() as h:
        r = h.post("/api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    return Notebook(ws, r.json()["id"])


def _screen_events(audit: ServiceProcess, ws: Workspace) -> list[dict[str, Any]]:
    return [
        e
        for e in audit_events(audit.env, source="workspace")
        if e["enclave"] == ws.enclave and e["action"].startswith("workspace.screen_output")
    ]


def _wait(
    audit: ServiceProcess, ws: Workspace, action: str, match: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    return wait_for_event(
        audit.env,
        source="workspace",
        match=lambda e: e["enclave"] == ws.enclave and e["action"] == action and match(e),
        timeout=60,
    )


#: A cell that sends data to the browser disguised as a kernel status message (which
#: the server passes past the budget, when it is small enough to be one).
_SEND_DATA_AS_STATUS = """
kernel = get_ipython().kernel
for _ in range({times}):
    kernel.session.send(
        kernel.iopub_socket,
        "status",
        {{"execution_state": "busy", "rows": "LEAK" * {repeat}}},
        parent=kernel.get_parent(),
        ident=b"kernel.status",
    )
"""


def _print(marker: str, n: int) -> str:
    return f"print({marker!r} * {n})"


def test_printing_a_dataset_to_the_screen_past_the_budget_refuses_further_output(
    start_workspace: Callable[..., Workspace], audit_service: ServiceProcess
) -> None:
    ws = start_workspace(enclave="screen-refuse", tier="nbdc-standard")
    nb = _start_kernel(ws)
    first = nb.run(_print("a", 1000))
    assert first.stdout == "a" * 1000 + "\n"
    periodic = _wait(
        audit_service, ws, "workspace.screen_output", lambda e: e["details"]["kernel_bytes"] > 0
    )
    warned_cell = nb.run(_print("x", BIG))
    assert warned_cell.stdout == "x" * BIG + "\n"  # still under the budget: delivered
    assert "its budget is 262,144 bytes" in warned_cell.stderr
    refused = nb.run(_print("y", BIG))
    after = nb.run("print('AFTER-THE-BUDGET')")
    assert "y" * 100 not in refused.stdout
    assert "screen-output budget reached" in refused.stderr
    assert "Further output of this session is not shown" in refused.stderr
    assert refused.reply is not None  # the cell finishes (its reply may precede the output)
    assert "AFTER-THE-BUDGET" not in after.stdout
    assert after.reply is not None
    assert after.reply["ename"] == "ScreenOutputBudget"  # past the budget: replaced, empty
    assert "output not shown" in after.stderr
    assert after.idle  # the kernel's status still reaches the browser
    disguised = nb.run(_SEND_DATA_AS_STATUS.format(times=1, repeat=5000))
    assert b"LEAKLEAK" not in disguised.raw  # a big "status" is output, refused
    trickle = nb.run(_SEND_DATA_AS_STATUS.format(times=200, repeat=1500))  # 6 KB each
    assert trickle.raw.count(b"LEAK") < 200 * 1500 // 2  # most of it never got through
    assert ws.proc.poll() is None  # refuse_output: the server keeps running

    exceeded = _wait(audit_service, ws, "workspace.screen_output.exceeded", lambda e: True)
    events = _screen_events(audit_service, ws)
    order = [e["id"] for e in events]
    warned = next(e for e in events if e["action"] == "workspace.screen_output.warned")
    assert order.index(periodic["id"]) < order.index(warned["id"]) < order.index(exceeded["id"])
    assert warned["details"]["total_bytes"] >= WARN
    assert exceeded["outcome"] == "denied"
    assert exceeded["actor"] == "r.tanaka"
    assert exceeded["details"]["channel"] == "kernel"
    assert exceeded["details"]["past_budget"] == "refuse_output"
    assert exceeded["details"]["total_bytes"] <= BUDGET
    later = _wait(
        audit_service,
        ws,
        "workspace.screen_output",
        lambda e: e["details"]["refused_messages"] >= 100,  # the trickle, refused
    )
    assert later["details"]["refused_bytes"] > BIG
    # whatever the kernel sends, the session never sends more than the budget and the
    # grace its protocol messages have past it (BUDGET // 8 here)
    assert later["details"]["total_bytes"] <= BUDGET + BUDGET // 8


def test_printing_a_dataset_to_the_screen_past_the_budget_stops_the_session(
    start_workspace: Callable[..., Workspace], audit_service: ServiceProcess
) -> None:
    ws = start_workspace(enclave="screen-stop", tier="tommo-strong")
    nb = _start_kernel(ws)
    warned = nb.run(_print("x", BIG))
    assert "the session will be stopped" in warned.stderr
    stopped = nb.run(_print("y", BIG))
    assert "y" * 100 not in stopped.stdout
    assert "screen-output budget reached" in stopped.stderr
    assert "This session is being stopped" in stopped.stderr
    ws.proc.wait(timeout=60)  # a deadline: the server stops itself

    exceeded = _wait(audit_service, ws, "workspace.screen_output.exceeded", lambda e: True)
    assert exceeded["details"]["past_budget"] == "stop_session"
    final = _wait(audit_service, ws, "workspace.screen_output", lambda e: e["details"]["final"])
    assert final["details"]["refused_messages"] >= 1
    assert final["details"]["kernel_bytes"] >= exceeded["details"]["kernel_bytes"]
    order = [e["id"] for e in _screen_events(audit_service, ws)]
    assert order.index(exceeded["id"]) < order.index(final["id"])
    log = (ws.root.parent / "server.log").read_text()
    assert "stopping: the session is past its screen-output budget" in log


def test_reading_a_large_file_through_the_contents_api_counts_against_the_screen_budget(
    start_workspace: Callable[..., Workspace], audit_service: ServiceProcess
) -> None:
    ws = start_workspace(enclave="screen-contents", tier="nbdc-high")
    with ws.http() as h:
        shown = h.get("/api/contents/cohort_extract.csv")
        assert shown.status_code == 200
        assert "rs429358" in shown.json()["content"]
        size = len(shown.content)
        counted = _wait(
            audit_service,
            ws,
            "workspace.screen_output",
            lambda e: e["details"]["contents_bytes"] >= size,
        )
        assert counted["details"]["kernel_bytes"] == 0
        again = h.get("/api/contents/cohort_extract.csv")
    assert again.status_code == 403
    assert "rs429358" not in again.text
    assert "screen-output budget reached" in again.json()["message"]
    exceeded = _wait(audit_service, ws, "workspace.screen_output.exceeded", lambda e: True)
    assert exceeded["details"]["channel"] == "contents"
    assert exceeded["details"]["contents_bytes"] == counted["details"]["contents_bytes"]


def test_the_session_totals_are_recorded_when_the_server_stops(
    start_workspace: Callable[..., Workspace], audit_service: ServiceProcess
) -> None:
    ws = start_workspace(enclave="screen-final", tier="tommo-standard")
    with ws.http() as h:
        assert h.get("/api/contents/cohort_extract.csv").status_code == 200
    stop_process(ws.proc)  # SIGTERM, as the hub stops a server
    final = _wait(audit_service, ws, "workspace.screen_output", lambda e: e["details"]["final"])
    assert final["details"]["contents_bytes"] > BIG
    assert final["details"]["past_budget"] == "refuse_output"


def _terminal_session(ws: Workspace, command: str) -> tuple[str, bool]:
    """Open a terminal as JupyterLab does, type ``command``; everything the browser
    received, and whether the socket closed, once the budget's notice arrived (or it
    closed)."""

    async def go() -> tuple[str, bool]:
        with ws.http() as h:
            r = h.post("/api/terminals")
        assert r.status_code == 200, r.text
        url = ws.url.replace("http", "ws") + f"/terminals/websocket/{r.json()['name']}"
        conn = await websocket_connect(
            HTTPRequest(url, headers={"Authorization": f"token {ws.token}"})
        )
        await conn.write_message(json.dumps(["stdin", command + "\r"]))
        shown = ""
        try:
            while "budget reached" not in shown:
                raw = await asyncio.wait_for(conn.read_message(), 120)  # a deadline only
                if raw is None:
                    return shown, True
                kind, *rest = json.loads(raw)
                if kind == "stdout":
                    shown += rest[0]
        finally:
            conn.close()
        return shown, False

    return run_coroutine(go())


def test_printing_a_file_in_a_terminal_past_the_budget_refuses_its_output(
    start_workspace: Callable[..., Workspace], audit_service: ServiceProcess
) -> None:
    ws = start_workspace(enclave="screen-terminal", tier="tommo-standard")  # terminals on
    extract = ws.root / "cohort_extract.csv"
    shown, _closed = _terminal_session(ws, f"/bin/cat {extract} {extract}")
    assert "its budget is 262,144 bytes" in shown  # the warning, as the output passed it
    assert "screen-output budget reached" in shown
    assert shown.count("rs429358") < 2 * (BIG // 18)  # not all of it reached the browser
    exceeded = _wait(audit_service, ws, "workspace.screen_output.exceeded", lambda e: True)
    assert exceeded["details"]["channel"] == "terminal"
    assert exceeded["details"]["total_bytes"] <= BUDGET


def test_a_crafted_kernel_frame_cannot_stall_the_server_it_is_sent_to(
    start_workspace: Callable[..., Workspace],
) -> None:
    """A v1 frame whose offset count says 2**62: Jupyter's own parser would build a list
    that long (the server stalls, the host's memory goes). The metered channels drop it
    from its offset table; the same socket then runs a cell."""
    ws = start_workspace(enclave="p-crafted", tier="nbdc-standard")
    nb = _start_kernel(ws)
    session = Session(username="r.tanaka")
    frame = serialize_msg_to_ws_v1(
        session.msg("execute_request", {"code": "print('never run')"}), "shell", session.pack
    )
    crafted = (2**62).to_bytes(8, "little") + frame[8:]
    cell = nb.run("print(6 * 7)", sent_before=crafted)
    assert cell.stdout == "42\n", cell
    assert "never run" not in cell.stdout
