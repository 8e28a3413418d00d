"""The intake writer's bounded queue: its places are given back however a batch ends."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from audit import open_log
from audit.service._errors import Backpressure
from audit.service._writer import Writer
from tests.harness.audit_service import sample_event


def test_a_batch_cancelled_while_queued_gives_its_place_back(tmp_path: Path) -> None:
    """A request task cancelled while its batch waits cancels the batch (through
    asyncio.wrap_future); its places must come back, or after a few such cancellations
    the token would be refused until a restart."""
    gate = threading.Event()
    with open_log(f"sqlite://{tmp_path}/audit.db") as log:

        def append(events: Sequence[Any]) -> list[int]:
            gate.wait(timeout=30)
            return log.append(events)

        writer = Writer(append=append, max_pending=8, max_pending_per_client=2, threads=1)
        writer.start()
        try:
            first = writer.submit([sample_event()], client="a")  # runs, held by the gate
            queued = writer.submit([sample_event()], client="b")
            assert writer.pending_of("b") == 1
            assert queued.cancel()  # still queued behind the first: cancellable
            assert writer.pending_of("b") == 0
            assert writer.pending == 1
            for _ in range(2):  # b's whole share is free again
                writer.submit([sample_event()], client="b")
            with pytest.raises(Backpressure) as refused:
                writer.submit([sample_event()], client="b")
            assert refused.value.reason == "client_share"
            gate.set()
            assert len(first.result(timeout=30).indexes) == 1
        finally:
            gate.set()
            writer.stop()
        assert writer.pending == 0
        assert writer.pending_of("a") == writer.pending_of("b") == 0
        assert log.sequenced() == 3  # the cancelled batch was never appended
