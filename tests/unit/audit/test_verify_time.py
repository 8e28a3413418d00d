"""The verifier's cached time parser agrees with the strict one on every input."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as s

from audit._events import time_ns
from audit._verify import _time_parser
from audit.errors import EventError

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
    parse = _time_parser()
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
