"""The screen channel, measured: bytes one workspace session sent to the browser.

A pure meter, fed by the server extension where bytes leave the server (kernel and
terminal websocket messages, contents API response bodies). It decides, per output,
whether it may still be sent under the tier's ``screen_output`` budget; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Channel", "ScreenDecision", "ScreenMeter"]

Channel = Literal["kernel", "contents", "terminal"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenDecision:
    """What to do with one output."""

    #: send it (False: it would take the session past its budget, or already is)
    send: bool
    #: this output took the session to its warning threshold (once per session)
    warned: bool = False
    #: this is the first output refused: the budget is reached (once per session)
    exceeded: bool = False


class ScreenMeter:
    """Counts bytes sent per channel and applies the budget (one per server session).

    1. An output that is refusable and would take the total sent past
       ``budget_bytes`` (or comes after one that did) is not sent: it is counted as
       refused, and the first such output is marked ``exceeded``.
    2. Otherwise it is counted as sent; the output that brings the total to
       ``warn_bytes`` or more is marked ``warned`` (once).
    3. An output that is not refusable (a protocol message the browser needs, or the
       notice telling the researcher why output stopped) is counted as sent, until
       the total reaches the budget plus ``grace_bytes``: past that everything is
       refused (a kernel runs the researcher's code, which can send its data as
       protocol messages; the grace bounds how much).
    """

    def __init__(self, *, budget_bytes: int, warn_bytes: int) -> None:
        if not 0 < warn_bytes < budget_bytes:
            raise ValueError("the warning must come before the budget, both above 0 bytes")
        self.budget_bytes = budget_bytes
        self.warn_bytes = warn_bytes
        #: what protocol messages and notices may add past the budget, at most
        self.grace_bytes = min(1 << 20, budget_bytes // 8)
        self.sent: dict[Channel, int] = {"kernel": 0, "contents": 0, "terminal": 0}
        self.refused_bytes = 0
        self.refused_messages = 0
        self.warned = False
        self.exceeded = False

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def offer(self, *, channel: Channel, size: int, refusable: bool = True) -> ScreenDecision:
        """Count one output of ``size`` bytes on ``channel``; say whether it may go."""
        limit = self.budget_bytes + (0 if refusable else self.grace_bytes)
        if (refusable and self.exceeded) or self.total + size > limit:
            first = not self.exceeded
            self.exceeded = True
            self.refused_bytes += size
            self.refused_messages += 1
            return ScreenDecision(send=False, exceeded=first)
        self.sent[channel] += size
        warned = not self.warned and self.total >= self.warn_bytes
        self.warned = self.warned or warned
        return ScreenDecision(send=True, warned=warned)

    def snapshot(self) -> tuple[int, ...]:
        """Bytes sent per channel, refused bytes and messages: what a record shows."""
        return (*self.sent.values(), self.refused_bytes, self.refused_messages)

    def details(self) -> dict[str, int]:
        """The counters as audit details (``workspace.screen_output*``)."""
        return {
            "kernel_bytes": self.sent["kernel"],
            "contents_bytes": self.sent["contents"],
            "terminal_bytes": self.sent["terminal"],
            "total_bytes": self.total,
            "refused_bytes": self.refused_bytes,
            "refused_messages": self.refused_messages,
            "warn_bytes": self.warn_bytes,
            "budget_bytes": self.budget_bytes,
        }
