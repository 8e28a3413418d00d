"""The screen channel under the tier's ``screen_output`` control, one session's worth.

``ScreenGuard`` holds the session's ``_screen.ScreenMeter`` and turns its decisions
into the records an officer reads (``workspace.screen_output*``), the notices the
researcher reads, and the stop where the tier says ``stop_session``;
``MeteredTermSocket`` applies it to a terminal's websocket, and
``report_screen_output`` records the counts periodically and as the server stops.
The kernel channels and the contents API apply it where they write
(``_kernelchannels``, ``_downloads``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from jupyter_server_terminals.handlers import TermSocket
from tornado import ioloop
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from audit.client import ClientError
from policies import ScreenOutputAction, Tier

from ._recorder import Recorder
from ._screen import Channel, ScreenDecision, ScreenMeter

__all__ = ["SCREEN_STILL_REFUSED", "MeteredTermSocket", "ScreenGuard", "report_screen_output"]

#: The short notice of every output refused after the first.
SCREEN_STILL_REFUSED = (
    "Enclave: output not shown: this session's screen-output budget is reached.\n"
)


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


class ScreenGuard:
    """This session's screen meter under the tier's ``screen_output`` control: the
    records an officer reads, the notices the researcher reads, and the stop."""

    def __init__(
        self,
        *,
        tier: Tier,
        recorder: Recorder,
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
        guard: ScreenGuard = self.settings["enclave_screen"]
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
            told = self._tell(notice or SCREEN_STILL_REFUSED)
            if decision.exceeded and told is not None:
                told.add_done_callback(lambda _: guard.stop_session())
                return
        if decision.exceeded:
            guard.stop_session()

    def _tell(self, text: str) -> Any:
        """Write a notice of this server's own (counted, never refused); its future."""
        data = json.dumps(["stdout", "\r\n" + text.replace("\n", "\r\n")])
        guard: ScreenGuard = self.settings["enclave_screen"]
        guard.meter.offer(channel="terminal", size=len(data.encode("utf-8")), refusable=False)
        try:
            return WebSocketHandler.write_message(self, data)
        except WebSocketClosedError:
            return None


def report_screen_output(serverapp: Any, guard: ScreenGuard, *, interval_s: int) -> None:
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
