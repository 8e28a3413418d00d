"""The naming rules every component's metrics follow."""

from __future__ import annotations

import json

import pytest
import structlog

from policies.telemetry import configure_logging, metric_name


def test_metric_names_carry_the_prefix_and_a_unit():
    assert metric_name("audit", "appends_total") == "enclave_audit_appends_total"
    assert metric_name("portal", "login_seconds") == "enclave_portal_login_seconds"


@pytest.mark.parametrize(
    ("component", "name", "problem"),
    [
        ("mail", "sent_total", "unknown metrics component"),
        ("audit", "Appends_total", "lower snake case"),
        ("audit", "appends__total", "lower snake case"),
        ("audit", "appends", "must end with a unit"),
    ],
)
def test_bad_metric_names_are_refused(component, name, problem):
    with pytest.raises(ValueError, match=problem):
        metric_name(component, name)


def test_json_logging_writes_one_object_per_event(capsys, monkeypatch):
    monkeypatch.setenv("ENCLAVE_LOG_FORMAT", "json")
    try:
        configure_logging(level="info")
        structlog.get_logger("t").info("hello", enclave="e1")
        structlog.get_logger("t").debug("hidden")
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1
        event = json.loads(lines[0])
        assert event["event"] == "hello"
        assert event["enclave"] == "e1"
        assert event["level"] == "info"
        assert event["timestamp"].endswith("Z")
    finally:
        structlog.reset_defaults()
