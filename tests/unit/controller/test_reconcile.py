"""The pure parts of one reconciliation: the Approval condition decides what is applied."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.kube._reconcile import Condition, _approval
from controller.kube._spec import read_enclave_file
from tests.assets.controller import example

ENCLAVE = read_enclave_file(example("nbdc-high"))  # 2026-12-01 .. 2027-11-30T23:59:59Z


@pytest.mark.parametrize(
    ("now", "status", "reason"),
    [
        (datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), "False", "NotYetValid"),
        (datetime(2026, 12, 1, tzinfo=UTC), "True", "InForce"),
        (datetime(2027, 11, 30, 23, 59, 58, tzinfo=UTC), "True", "InForce"),
        (datetime(2027, 11, 30, 23, 59, 59, tzinfo=UTC), "False", "Expired"),
    ],
)
def test_approval_is_in_force_only_between_not_before_and_not_after(
    now: datetime, status: str, reason: str
) -> None:
    condition = _approval(ENCLAVE, now)
    assert isinstance(condition, Condition)
    assert (condition.type, condition.status, condition.reason) == ("Approval", status, reason)
