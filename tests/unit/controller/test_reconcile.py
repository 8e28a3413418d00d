"""The pure parts of one reconciliation: the Approval condition decides what is applied."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.kube._conditions import Condition, approval_condition
from controller.kube._reconcile import _drift_repaired
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
    condition = approval_condition(ENCLAVE, now)
    assert isinstance(condition, Condition)
    assert (condition.type, condition.status, condition.reason) == ("Approval", status, reason)


WRITTEN = ("NetworkPolicy enclave-x/singleuser", "Deployment enclave-x/hub")


def _doc(*, generation: int, observed: int | None) -> dict[str, object]:
    status = {} if observed is None else {"observedGeneration": observed}
    return {"metadata": {"name": "x", "generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("document", "previous", "state", "repaired"),
    [
        # settled and open: a policy the sync rewrote was changed by someone else
        (_doc(generation=3, observed=3), "Ready", "open", WRITTEN[:1]),
        (_doc(generation=3, observed=3), "Provisioning", "open", WRITTEN[:1]),
        # the spec changed: new policies are an update, not drift
        (_doc(generation=4, observed=3), "Ready", "open", ()),
        # first provisioning and re-opening after a quarantine or suspension
        (_doc(generation=1, observed=None), None, "open", ()),
        (_doc(generation=3, observed=3), "Quarantined", "open", ()),
        (_doc(generation=3, observed=3), "Suspended", "open", ()),
        # a closed enclave's policies deny everything: not reported as drift
        (_doc(generation=3, observed=3), "Ready", "quarantined", ()),
    ],
)
def test_a_policy_rewrite_is_reported_as_drift_only_when_nothing_asked_for_it(
    document: dict[str, object], previous: str | None, state: str, repaired: tuple[str, ...]
) -> None:
    assert _drift_repaired(document, previous, state, WRITTEN) == repaired
