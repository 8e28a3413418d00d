"""The pure parts of the lifecycle: what a closed enclave renders, its audit events."""

from __future__ import annotations

from typing import Any

import pytest

from controller.kube import RenderSettings, load_enclave, render_enclave, validate_enclave
from controller.kube._lifecycle import WANTED_ACTIONS, lifecycle_event
from policies import load_catalog
from tests.assets.controller import example, load_document


def _render(state: str, **spec: Any) -> list[dict[str, Any]]:
    doc = load_document(example("nbdc-standard"))
    doc["spec"].update(spec)
    enclave = load_enclave(doc)
    return render_enclave(
        enclave=enclave,
        tier=load_catalog().get(enclave.tier),
        settings=RenderSettings(),
        hub_config=None,
        state=state,
    )


def _kinds(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_a_quarantined_enclave_keeps_only_the_default_deny_and_runs_nothing() -> None:
    objects = _render("quarantined")
    policies = [p["metadata"]["name"] for p in _kinds(objects, "NetworkPolicy")]
    assert policies == ["default-deny"]
    assert _kinds(objects, "Ingress") == []
    assert {d["spec"]["replicas"] for d in _kinds(objects, "Deployment")} == {0}


def test_a_suspended_enclave_has_no_ingress_and_no_running_hub_but_keeps_its_policies() -> None:
    objects = _render("suspended")
    open_ = _render("open")
    assert _kinds(objects, "NetworkPolicy") == _kinds(open_, "NetworkPolicy")
    assert _kinds(objects, "Ingress") == []
    assert {d["spec"]["replicas"] for d in _kinds(objects, "Deployment")} == {0}
    assert {d["spec"]["replicas"] for d in _kinds(open_, "Deployment")} == {1}


def test_an_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown state"):
        _render("ajar")


@pytest.mark.parametrize("reason", ["", "  ", " padded "])
def test_a_quarantine_without_a_reason_is_refused_naming_the_field(reason: str) -> None:
    doc = load_document(example("nbdc-standard"))
    doc["spec"]["quarantine"] = {"active": True, "reason": reason}
    fields = {p.field for p in validate_enclave(doc)}
    assert "spec.quarantine.reason" in fields


def test_a_quarantine_with_a_reason_is_accepted_and_read() -> None:
    doc = load_document(example("nbdc-standard"))
    doc["spec"]["quarantine"] = {"active": True, "reason": "incident 42", "by": "officer-a"}
    enclave = load_enclave(doc)
    assert enclave.quarantined
    assert enclave.quarantine is not None
    assert enclave.quarantine.by == "officer-a"


def test_the_end_of_use_record_is_sent_with_a_registered_action_from_the_controller() -> None:
    event = lifecycle_event(
        action="enclave.end_of_use",
        enclave="gut-2026",
        actor="system:enclave-controller",
        details={"reason": "deleted", "tier": "nbdc-standard", "volumes_destroyed": True},
        event_id="ctl-uid-end-of-use",
    )
    assert event is not None
    assert event.source == "controller"
    assert event.action in ("enclave.end_of_use", "enclave.deprovisioned")
    assert event.details["reason"] == "deleted"


def test_every_wanted_action_is_registered_or_not_sent() -> None:
    for action in WANTED_ACTIONS:
        event = lifecycle_event(
            action=action, enclave="e", actor="a", details={}, event_id=f"id-{action}"
        )
        assert event is None or event.action in (action, "enclave.deprovisioned")
