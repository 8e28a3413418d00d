"""The verifier's cached time parser agrees with the strict one on every input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as s

from audit import open_log, parse_event, verify_store
from audit._events import time_ns
from audit._verify_scan import _TimeParser
from audit.errors import EventError
from tests.harness.audit_service import sample_event

_times = s.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 12, 31), timezones=s.just(UTC)
)


def _strict(t: str) -> int | str:
    try:
        return time_ns(t)
    except EventError:
        return "invalid"


def _cached(parse: object, t: str) -> int | str:
    try:
        return parse(t)  # type: ignore[operator, no-any-return]
    except EventError:
        return "invalid"


@settings(max_examples=300, deadline=None)
@given(_times, s.integers(min_value=0, max_value=10), s.integers(min_value=0, max_value=25))
def test_cached_parser_equals_strict(dt: datetime, digits: int, mutate_at: int) -> None:
    parse = _TimeParser()
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{dt.microsecond:06d}{dt.microsecond:06d}"[:digits]
    text += "Z"
    # the well-formed time, twice (the second from the minute cache), then a mutation
    assert (_strict(text) == "invalid") == (digits > 9)
    assert _cached(parse, text) == _strict(text)
    assert _cached(parse, text) == _strict(text)
    for ch in ("9", "6", "x", "٣", ""):
        bad = text[:mutate_at] + ch + text[mutate_at + 1 :]
        assert _cached(parse, bad) == _strict(bad), bad


def _batch(parse: _TimeParser, ts: list[str]) -> list[int] | str:
    try:
        return parse.many(ts)
    except EventError:
        return "invalid"


def _strict_all(ts: list[str]) -> list[int] | str:
    out = [_strict(t) for t in ts]
    return "invalid" if "invalid" in out else out  # type: ignore[return-value]


@settings(max_examples=300, deadline=None)
@given(
    s.lists(_times, min_size=1, max_size=40),
    s.integers(min_value=0, max_value=9),
    s.integers(min_value=0, max_value=40),
    s.integers(min_value=0, max_value=25),
    s.sampled_from(["9", "6", "x", "٣", "", "Z", "."]),
)
def test_batch_parser_equals_strict(
    dts: list[datetime], digits: int, victim: int, mutate_at: int, ch: str
) -> None:
    """A batch of one shape takes the vectorised path; a mutation of any one of its
    times (another digit, a non-ASCII digit, another length) must give the strict
    parser's answer for the batch, as one call per time would."""
    parse = _TimeParser()
    ts = []
    for dt in dts:
        text = dt.strftime("%Y-%m-%dT%H:%M:%S")
        if digits:
            text += "." + f"{dt.microsecond:06d}{dt.microsecond:06d}"[:digits]
        ts.append(text + "Z")
    assert _batch(parse, ts) == _strict_all(ts)
    assert _batch(parse, ts) == _strict_all(ts)  # from the caches
    if victim < len(ts):
        t = ts[victim]
        ts[victim] = t[:mutate_at] + ch + t[mutate_at + 1 :]
    assert _batch(parse, ts) == _strict_all(ts), ts


def test_non_ascii_digits_are_refused_in_new_input_only(tmp_path: Path) -> None:
    """RFC 3339's DIGIT is ASCII: intake (parse_event) refuses other scripts' digits.
    Logs written before it did may hold such times: they still parse and verify."""
    text = "2026-11-2\u0663T10:00:00Z"  # an Arabic-Indic three
    with pytest.raises(EventError, match="digits must be ASCII") as refused:
        parse_event(dict(sample_event().to_dict(), time=text))
    assert refused.value.field == "time"
    url = f"sqlite://{tmp_path}/audit.db"
    with open_log(url) as log:  # in-process, as an older service appended it
        log.append([sample_event(time=text)])
        log.integrate()
        assert log.stored_event(0).event.time_ns == time_ns("2026-11-23T10:00:00Z")
    report = verify_store(open_log(url).store)
    assert report.ok, report.problems
