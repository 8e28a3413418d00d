"""The compiled fast path of verify (``audit._speedups``) against its Python reference.

It must be *sound*: whatever it accepts, the Python checks accept too (a leaf it calls
canonical is what orjson gives back unchanged; a time it parses has the strict parser's
value; a batch it passes has no problem entry by entry). It should also accept what
logs really hold, or verify silently falls back to the slower Python path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as s

# Imported, not importorskip'ed: without the compiled module these tests fail.
from audit import Event, _speedups, open_log
from audit import _verify_scan as scan_module
from audit._events import time_ns
from audit.errors import EventError

from .test_verify_time import _times

_SORT = orjson.OPT_SORT_KEYS


def _canonical(leaf: bytes) -> bool:
    """The definition: orjson gives the leaf back unchanged."""
    try:
        return orjson.dumps(orjson.loads(leaf), option=_SORT) == leaf
    except (orjson.JSONDecodeError, TypeError):
        return False


def test_verify_uses_the_compiled_module() -> None:
    assert scan_module._speedups is _speedups


# JSON values of every kind orjson reads, strings over all of Unicode but surrogates
_text = s.text(s.characters(exclude_categories=("Cs",)), max_size=12)
_json = s.recursive(
    s.none()
    | s.booleans()
    | s.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson writes
    | s.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: s.lists(inner, max_size=4) | s.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
# bytes a mutation splices in: structure, escapes, digits, UTF-8 pieces good and bad
_PIECES = [
    *(bytes([c]) for c in b'{}[]":,\\/-+.eE0123456789 tfnu'),
    b"\\u00",
    b"\\u001f",
    b"\\u000a",
    b"\\n",
    b"\x00",
    b"\x1f",
    b"\x7f",
    b"\xc3\xa9",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xe0\x80\x80",
    b"\xf0\x9f\x98\x80",
    b"\xf4\x90\x80\x80",
    b"\xff",
    b"true",
    b"null",
    b"-0",
    b"1e5",
]


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for op, at, piece in edits:
        at = at % (len(out) + 1)
        p = _PIECES[piece % len(_PIECES)]
        if op == 0:
            out[at:at] = p
        elif op == 1:
            del out[at : at + len(p)]
        else:
            out[at : at + len(p)] = p
    return bytes(out)


_edits = s.lists(s.tuples(s.integers(0, 2), s.integers(0, 10_000), s.integers(0, 100)), max_size=3)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s.dictionaries(_text, _json, max_size=6), _edits, s.booleans())
def test_canonical_check_is_sound(value: dict[str, Any], edits: Any, sort: bool) -> None:
    """Accepted bytes are canonical JSON, whatever was done to them; the fields read
    from them are the values orjson reads."""
    data = _mutate(orjson.dumps(value, option=_SORT if sort else 0), edits)
    fields = _speedups.canonical_fields(data)
    if fields is None:
        return
    assert _canonical(data), data
    parsed = orjson.loads(data)
    assert isinstance(parsed, dict)
    for name, (kind, raw) in fields.items():
        v = parsed[name]
        if kind == "plain":
            assert v == raw.decode("utf-8")
        elif kind == "escaped":
            assert isinstance(v, str)
        elif kind == "null":
            assert v is None
        else:
            assert v is not None
            assert not isinstance(v, str)
    assert set(fields) == set(parsed) & set(_speedups.FIELD_NAMES)


@settings(max_examples=500, deadline=None)
@given(s.lists(s.tuples(_text, _json), max_size=6))
def test_unsorted_or_duplicate_keys_are_refused(items: list[Any]) -> None:
    body = b",".join(orjson.dumps(k) + b":" + orjson.dumps(v, option=_SORT) for k, v in items)
    data = b"{" + body + b"}"
    if _speedups.canonical_fields(data) is not None:
        assert _canonical(data)


# What logs really hold: the subset the compiled check is meant to accept.
_key = s.text(
    s.characters(exclude_categories=("Cs",), exclude_characters='"\\', min_codepoint=0x20),
    max_size=10,
)
_plain_json = s.recursive(
    s.none() | s.booleans() | s.integers(-(10**18) + 1, 10**18 - 1) | _text,
    lambda inner: s.lists(inner, max_size=4) | s.dictionaries(_key, inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=500, deadline=None)
@given(s.dictionaries(_key, _plain_json, max_size=8))
def test_canonical_check_accepts_what_logs_hold(value: dict[str, Any]) -> None:
    """Everything without floats or huge integers is accepted, including escapes in
    values, control characters, every plane of Unicode and deep nesting."""
    assert _speedups.canonical_fields(orjson.dumps(value, option=_SORT)) is not None


@pytest.mark.parametrize(
    ("leaf", "why"),
    [
        (b'{"a":1,"a":2}', "duplicate key"),
        (b'{"b":1,"a":2}', "unsorted keys"),
        (b'{"a": 1}', "whitespace"),
        (b'{"a":1} ', "trailing whitespace"),
        (b'{"a":1}{}', "trailing value"),
        (b'{"a":1.0}', "a float"),
        (b'{"a":-0}', "minus zero"),
        (b'{"a":01}', "leading zero"),
        (b'{"a":"\\u000a"}', "long escape for a short one"),
        (b'{"a":"\\u00e9"}', "escaped non-control character"),
        (b'{"a":"\\/"}', "escaped solidus"),
        (b'{"a":"\\u001F"}', "uppercase hex"),
        (b'{"a":"\x01"}', "raw control character"),
        (b'{"a":"\xed\xa0\x80"}', "encoded surrogate"),
        (b'{"a":"\xc0\xaf"}', "overlong UTF-8"),
        (b'{"a":"\xf4\x90\x80\x80"}', "above U+10FFFF"),
        (b'{"\\n":1}', "escaped key"),
        (b"[1]", "not an object"),
        (b'{"a":' + b"[" * 40 + b"]" * 40 + b"}", "nested deeper than the fast path goes"),
        (b'{"a":1234567890123456789}', "more than 18 digits"),
    ],
)
def test_canonical_check_refuses(leaf: bytes, why: str) -> None:
    assert _speedups.canonical_fields(leaf) is None, why


def test_canonical_check_reads_the_fields() -> None:
    leaf = orjson.dumps(
        {"action": "a.b", "actor": "研究者", "enclave": None, "id": "x\ny", "time": 5, "z": "t"},
        option=_SORT,
    )
    assert _speedups.canonical_fields(leaf) == {
        "action": ("plain", b"a.b"),
        "actor": ("plain", "研究者".encode()),
        "enclave": ("null", b""),
        "id": ("escaped", b"x\\ny"),
        "time": ("other", b""),
    }


def _strict(t: str) -> int | None:
    try:
        return time_ns(t)
    except EventError:
        return None


@settings(max_examples=1000, deadline=None)
@given(_times, s.integers(0, 10), s.integers(0, 30), s.sampled_from([*list("96x0Z.:-T "), "", "٣"]))
def test_time_parser_is_sound(dt: Any, digits: int, at: int, ch: str) -> None:
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{dt.microsecond:06d}{dt.microsecond:06d}"[:digits]
    text += "Z"
    if digits <= 9:
        assert _speedups.time_ns(text.encode()) == time_ns(text)  # the common shape: taken
    bad = text[:at] + ch + text[at + 1 :]
    got = _speedups.time_ns(bad.encode())
    if got is not None:
        assert got == _strict(bad), bad


@pytest.mark.parametrize(
    "text",
    ["2024-02-29T23:59:59.999999999Z", "1970-01-01T00:00:00Z", "2261-12-31T23:59:59Z"],
)
def test_time_parser_edges(text: str) -> None:
    assert _speedups.time_ns(text.encode()) == time_ns(text)


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29T00:00:00Z",
        "2026-11-26T24:00:00Z",
        "2026-11-26T10:00:60Z",
        "9999-01-01T00:00:00Z",
    ],
)
def test_time_parser_leaves_the_rest_to_python(text: str) -> None:
    assert _speedups.time_ns(text.encode()) is None


@settings(max_examples=200, deadline=None)
@given(s.integers(0, 256))
def test_tile_levels_equal_the_python_ones(n: int) -> None:
    items = [os.urandom(32) for _ in range(n)]
    assert _speedups.tile_levels(items) == scan_module._tile_levels(items)


def test_tile_levels_refuse_what_is_not_a_hash() -> None:
    with pytest.raises(ValueError, match="32-byte hashes"):
        _speedups.tile_levels([b"short", b"x" * 32])


def _events(n: int) -> list[Event]:
    return [
        Event(
            id=f"e-{i}",
            time=f"2026-11-26T10:{i // 60 % 60:02d}:{i % 60:02d}"
            + (f".{i:03d}Z" if i % 2 else "Z"),
            source="portal",
            # the last rows' actors need escapes: their columns are compared in Python
            actor=["user", "研究者"][i % 2] if i < 48 else ['quote"d', "back\\slash"][i % 2],
            action="session.started",
            outcome="success",
            enclave=None if i % 5 == 0 else f"proj-{i % 3}",
            details={"tier": "nbdc-high", "factors": ["pwd", "otp"], "session_id": f's"{i}'},
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    path: Path = tmp_path_factory.mktemp("speedups") / "audit.db"
    with open_log(f"sqlite://{path}") as log:
        log.append(_events(64))
        log.integrate()
        return log.store.verify_rows(0, 64)


def _python_verdict(batch: list[tuple[Any, ...]], first: int) -> tuple[bool, list[bytes]]:
    st = scan_module.Problems()
    hashes: list[bytes] = []
    scan_module._check_rows(
        st,
        batch,
        first,
        10**9,
        scan_module._TimeParser(),
        lambda hs, _i: hashes.extend(hs),
        lambda _idx: None,  # a packed value that cannot be read back: no columns
    )
    return not st.problems, hashes


def _unit(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row as PostgreSQL returns it: the columns in the UNIT_PACKING form."""
    values = orjson.loads(row[5])
    values[4] = "" if values[4] is None else "\x1e" + values[4]
    return (*row[:5], "\x1f".join(values))


def test_clean_rows_pass_in_both_shapes(rows: list[tuple[Any, ...]]) -> None:
    """Rows whose columns need no escape pass, packed as JSON (SQLite) or in the
    UNIT_PACKING form (PostgreSQL); a value with an escape in the leaf sends its batch
    to Python, which passes it too."""
    ok, hashes = _python_verdict(rows, 0)
    assert ok
    assert hashes[:48] == [hashlib.sha256(b"\x00" + r[2]).digest() for r in rows[:48]]
    assert _python_verdict([_unit(r) for r in rows], 0) == (True, hashes)
    for shape in (rows, [_unit(r) for r in rows]):
        assert _speedups.check_batch(shape[:48], 0, 10**9) == hashes[:48]
        assert _speedups.check_batch(shape[47:49], 47, 10**9) is None
        assert _speedups.check_batch(shape, 0, 10**9) is None


_FIELDS = range(6)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    s.integers(0, 60),
    s.integers(1, 4),
    s.sampled_from(_FIELDS),
    s.integers(0, 400),
    s.binary(min_size=1, max_size=3),
    s.booleans(),
    s.booleans(),
)
def test_check_batch_is_sound(
    rows: list[tuple[Any, ...]],
    start: int,
    length: int,
    field: int,
    at: int,
    piece: bytes,
    packed: bool,
    rehash: bool,
) -> None:
    """Tamper with one field of one row of a batch; if the compiled check still passes
    the batch, the Python checks find no problem in it and agree on every hash."""
    batch = [r if packed else _unit(r) for r in rows[start : start + length]]
    victim = list(batch[0])
    value = victim[field]
    if isinstance(value, bytes):
        at %= len(value) + 1
        victim[field] = value[:at] + piece + value[at + len(piece) :]
    elif isinstance(value, int) and not isinstance(value, bool):
        victim[field] = value + (1 if at % 2 else -1) * (1 + at % 3)
    elif isinstance(value, str):  # a UNIT_PACKING str
        at %= len(value) + 1
        victim[field] = value[:at] + piece.decode("latin-1") + value[at + len(piece) :]
    else:
        victim[field] = not value
    if field == 2 and rehash:  # a leaf edited with its hash: the deeper checks must see it
        victim[1] = hashlib.sha256(b"\x00" + victim[2]).digest()
    batch[0] = tuple(victim)
    assume(batch[0] != (rows[start] if packed else _unit(rows[start])))
    got = _speedups.check_batch(batch, start, 10**9)
    if got is not None:
        ok, hashes = _python_verdict(batch, start)
        assert ok, batch[0]
        assert got == hashes


def test_check_batch_refuses_odd_calls(rows: list[tuple[Any, ...]]) -> None:
    """Found in review: an index past the largest one, an ``indexed`` value of a type
    no driver returns (its truth could run code), arguments of the wrong type."""
    assert _speedups.check_batch(rows[:2], 2**63 - 1, 10**9) is None

    mine = list(rows[:4])

    class Odd:
        def __bool__(self) -> bool:
            mine.clear()  # would free the rows under a check reading them in place
            return True

    mine[1] = (*mine[1][:4], Odd(), mine[1][5])
    assert _speedups.check_batch(mine, 0, 10**9) is None
    for call in (
        lambda: _speedups.check_batch(None, 0, 0),  # type: ignore[arg-type]
        lambda: _speedups.tile_levels(None),  # type: ignore[arg-type]
        lambda: _speedups.canonical_fields(None),  # type: ignore[arg-type]
        lambda: _speedups.time_ns(None),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError):
            call()
