"""The event model: strict validation naming the field, the action registry, and
canonical bytes (the orjson fast path is byte-identical to RFC 8785 JCS)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.errors import EventError
from audit.events import ACTIONS, MAX_EVENT_BYTES, Event, encode_leaf, jcs, parse_event, parse_leaf


def good(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": "01J-evt:1",
        "time": "2026-11-26T10:00:00.123Z",
        "source": "portal",
        "actor": "山田太郎@example.jp",
        "action": "auth.factor.verified",
        "enclave": "proj-1",
        "outcome": "success",
        "client_ip": "2001:db8::1",
        "details": {"factor": "webauthn", "aal": 3},
    }
    d.update(over)
    return d


def test_a_good_event_round_trips_through_its_leaf() -> None:
    ev = parse_event(json.dumps(good()))
    leaf = encode_leaf(ev, received="2026-11-26T10:00:01.000000Z")
    assert leaf == jcs(json.loads(leaf))
    assert json.loads(leaf)["received"] == "2026-11-26T10:00:01.000000Z"
    assert json.loads(leaf)["schema"] == ACTIONS["auth.factor.verified"].version
    back = parse_leaf(leaf, index=7)
    assert back.event == ev
    assert back.index == 7
    assert back.leaf == leaf
    assert ev.details["factor"] == "webauthn"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"id": ""}, "id"),
        ({"id": "a b"}, "id"),
        ({"time": "2026-11-26 10:00:00"}, "time"),
        ({"time": "2026-11-26T10:00:00+09:00"}, "time"),
        ({"time": "2026-02-30T10:00:00Z"}, "time"),
        ({"source": "browser"}, "source"),
        ({"actor": ""}, "actor"),
        ({"actor": "a\nb"}, "actor"),
        ({"actor": "x" * 257}, "actor"),
        ({"action": "Auth.Login"}, "action"),
        ({"action": "auth.unknown.thing"}, "action"),
        ({"outcome": "ok"}, "outcome"),
        ({"enclave": ""}, "enclave"),
        ({"client_ip": "10.0.0.256"}, "client_ip"),
        ({"client_ip": "2001:DB8::1"}, "client_ip"),
        ({"details": []}, "details"),
        ({"details": {"factor": "webauthn", "aal": 1.5}}, "details.aal"),
        ({"details": {"factor": "webauthn", "aal": 2**53}}, "details.aal"),
        ({"details": {"factor": "webauthn", "aal": True}}, "details.aal"),
        ({"details": {"factor": "sms"}}, "details.factor"),
        ({"details": {"aal": 2}}, "details.factor"),
        ({"details": {"factor": "totp", "colour": "red"}}, "details.colour"),
        ({"details": {"factor": "totp", "user_agent": "\ud800"}}, "details.user_agent"),
    ],
)
def test_bad_fields_are_named(over: dict[str, Any], field: str) -> None:
    with pytest.raises(EventError) as e:
        parse_event(good(**over), line=4)
    assert e.value.field == field
    assert e.value.line == 4
    assert str(e.value).startswith(f"line 4, field '{field}': ")


def test_unknown_and_missing_fields_and_malformed_json() -> None:
    with pytest.raises(EventError, match="field 'extra': unknown field"):
        parse_event({**good(), "extra": 1})
    for f in (
        "id",
        "time",
        "source",
        "actor",
        "action",
        "outcome",
        "enclave",
        "client_ip",
        "details",
    ):
        d = good()
        del d[f]
        with pytest.raises(EventError) as e:
            parse_event(d)
        assert e.value.field == f
    with pytest.raises(EventError, match="malformed JSON"):
        parse_event(b'{"id": ', line=9)
    with pytest.raises(EventError, match="must be a JSON object"):
        parse_event(b"[1]")


def test_size_limit() -> None:
    path = "p" * 4000
    ok = good(action="workspace.file.get", details={"path": path})
    assert len(Event(**ok).canonical()) < MAX_EVENT_BYTES
    with pytest.raises(EventError, match="limit"):
        parse_event(b'{"pad": "' + b"x" * (2 * MAX_EVENT_BYTES) + b'"}')
    with pytest.raises(EventError) as e:
        Event(**good(action="session.started", details={"factors": ["f" * 1024] * 64}))
    assert e.value.field == "details"
    assert "65536-byte limit" in str(e.value)


def test_every_action_says_what_it_cannot_capture() -> None:
    assert len(ACTIONS) >= 20
    for name, spec in ACTIONS.items():
        assert spec.name == name
        assert spec.version >= 1
        assert spec.cannot_capture.strip()
        assert spec.summary.strip()


def test_new_fills_id_and_time() -> None:
    ev = Event.new(source="cli", actor="ops", action="auth.logout", outcome="success")
    assert len(ev.id) == 32
    assert ev.time.endswith("Z")
    assert ev != Event.new(source="cli", actor="ops", action="auth.logout", outcome="success")


# -- the fast path equals JCS on the event domain ----------------------------------------------
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | text,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_orjson_sorted_equals_rfc8785_on_the_event_domain(value: Any) -> None:
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(
    actor=text.filter(lambda s: s and not any(ord(c) < 32 or c == "\x7f" for c in s)),
    path=text,
    n=st.integers(-(2**53) + 1, 2**53 - 1),
    factors=st.lists(text, max_size=4),
)
def test_leaves_are_jcs(actor: str, path: str, n: int, factors: list[str]) -> None:
    for action, details in (
        ("workspace.file.get", {"path": path or "x", "bytes": n}),
        ("session.started", {"factors": factors, "tier": path[:64]}),
    ):
        ev = Event(**good(actor=actor, action=action, details=details))
        leaf = encode_leaf(ev, received="2026-11-26T10:00:00.000000Z")
        assert leaf == rfc8785.dumps(orjson.loads(leaf))
        assert ev.canonical() == rfc8785.dumps(ev.to_dict())


def test_where_the_serialisers_differ_is_outside_the_domain() -> None:
    """Floats are where JCS and orjson disagree; the model refuses them."""
    for f in (1.0, 1e20, -0.0, 1e-6):
        assert orjson.dumps(f) != rfc8785.dumps(f)
        with pytest.raises(EventError):
            Event(**good(action="workspace.file.get", details={"path": "x", "bytes": f}))


def _code_event(code: str) -> dict[str, Any]:
    return good(
        source="workspace",
        action="workspace.code.executed",
        details={"kernel_id": "k1", "code": code, "sha256": "0" * 64, "bytes": len(code)},
    )


def test_code_keeps_its_line_feeds_and_tabs() -> None:
    code = "import pandas as pd\nfor g in genera:\n\tprint(g)\n"
    assert parse_event(_code_event(code)).details["code"] == code


@pytest.mark.parametrize("bad", ["\u202e", "\u2028", "\r", "\x1b[2J", "\u200b"])
def test_code_cannot_hide_what_it_ran_behind_invisible_characters(bad: str) -> None:
    # Only line feeds and tabs are allowed in a multi-line field: a bidi override or a
    # terminal escape would make the officer read other code than what ran.
    with pytest.raises(EventError) as e:
        parse_event(_code_event(f"x = 1\n# {bad}\nrm_all()"))
    assert e.value.field == "details.code"


def test_a_line_feed_is_refused_where_the_field_is_not_multi_line() -> None:
    with pytest.raises(EventError) as e:
        parse_event(good(actor="alice\nofficer:bootstrap"))
    assert e.value.field == "actor"
