"""Verification's chunk-wide fast path and its entry-by-entry fallback agree.

``verify`` checks a chunk of entries at once and walks it entry by entry only when
something in it fails. These tests tamper with the file directly (triggers dropped,
as an intruder with file access would) in the places the attack corpus does not
reach: a leaf that hashes right but is not canonical, and a missing query-index row
in a chunk that straddles the integrated size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from audit import Event, open_log, verify_store
from tests.harness.common import tamper_postgres, tamper_sqlite
from tests.harness.postgres import PgDatabase

pytestmark = pytest.mark.usefixtures("verify_path")


def _events(first: int, n: int) -> list[Event]:
    return [
        Event(
            id=f"p-{i}",
            time=f"2026-11-26T10:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
            source="portal",
            actor=f"user{i % 4}",
            action="auth.logout",
            outcome="success",
            enclave=None if i % 5 == 0 else f"proj-{i % 3}",
        )
        for i in range(first, first + n)
    ]


@pytest.mark.parametrize("chunk", [7, 256, 20_000])
def test_clean_log_passes_whatever_the_chunk(tmp_path: Path, chunk: int) -> None:
    url = f"sqlite://{tmp_path}/audit.db"
    with open_log(url) as log:
        log.append(_events(0, 700))
        log.integrate()
        log.append(_events(700, 30))  # pending: leaves checked, no tiles yet
    report = verify_store(open_log(url).store, chunk=chunk)
    assert report.ok, report.problems
    assert (report.entries, report.pending) == (730, 30)


@pytest.mark.parametrize("chunk", [7, 20_000])
def test_non_canonical_leaf_with_a_matching_hash(tmp_path: Path, chunk: int) -> None:
    url = f"sqlite://{tmp_path}/audit.db"
    with open_log(url) as log:
        log.append(_events(0, 300))  # not integrated: no tile or root covers them
    with open_log(url) as log:
        leaf = log.entry(123)
    spaced = orjson.dumps(orjson.loads(leaf), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    assert spaced != leaf
    tamper_sqlite(
        tmp_path / "audit.db",
        (
            "UPDATE audit_entries SET leaf = ?, leaf_hash = ? WHERE idx = 123",
            (spaced, hashlib.sha256(b"\x00" + spaced).digest()),
        ),
    )
    report = verify_store(open_log(url).store, chunk=chunk)
    assert not report.ok
    assert report.first_bad_index == 123
    assert report.problems == ("entry 123: leaf is not canonical JSON",)


@pytest.mark.parametrize("chunk", [7, 20_000])
def test_missing_index_row_just_below_the_integrated_size(tmp_path: Path, chunk: int) -> None:
    url = f"sqlite://{tmp_path}/audit.db"
    with open_log(url) as log:
        log.append(_events(0, 300))
        log.integrate()
        log.append(_events(300, 50))  # the last chunk holds integrated and pending entries
    tamper_sqlite(tmp_path / "audit.db", ("DELETE FROM audit_index WHERE idx = ?", (299,)))
    report = verify_store(open_log(url).store, chunk=chunk)
    assert not report.ok
    assert report.first_bad_index == 299
    assert "entry 299: its query-index row is missing or differs from the leaf" in report.problems


def test_leaf_stored_as_text_is_named_not_a_crash(tmp_path: Path) -> None:
    """The same bytes stored as TEXT: no writer does that, so it is reported, and the
    verifier goes on (it hashes the text's bytes) instead of failing with a TypeError."""
    url = f"sqlite://{tmp_path}/audit.db"
    with open_log(url) as log:
        log.append(_events(0, 200))
        log.integrate()
    tamper_sqlite(
        tmp_path / "audit.db",
        ("UPDATE audit_entries SET leaf = CAST(leaf AS TEXT) WHERE idx = ?", (77,)),
    )
    report = verify_store(open_log(url).store)
    assert not report.ok
    assert report.first_bad_index == 77
    assert report.problems == ("entry 77: leaf is not stored as bytes",)


@pytest.mark.parametrize(
    ("shape", "idx"),
    [("{s}Z", 130), ("{s}.5Z", 5), ("{s}.123456789Z", 255)],
)
def test_time_column_off_by_one_nanosecond(tmp_path: Path, shape: str, idx: int) -> None:
    """Batches whose times share one shape are parsed a step at a time over the batch
    (``_TimeParser.many``): a stored time one nanosecond off is still named."""
    url = _log_of_times(
        tmp_path,
        [shape.format(s=f"2026-11-26T10:{i // 60 % 60:02d}:{i % 60:02d}") for i in range(300)],
    )
    tamper_sqlite(
        tmp_path / "audit.db",
        ("UPDATE audit_entries SET time_ns = time_ns + 1 WHERE idx = ?", (idx,)),
        ("UPDATE audit_index SET time_ns = time_ns + 1 WHERE idx = ?", (idx,)),
    )
    report = verify_store(open_log(url).store)
    assert not report.ok
    assert report.first_bad_index == idx
    assert report.problems == (f"entry {idx}: a stored column differs from the leaf's value",)


def test_times_of_mixed_shapes_in_one_batch(tmp_path: Path) -> None:
    """Times with and without a fraction in one batch take the time-by-time path."""
    _log_of_times(
        tmp_path,
        [f"2026-02-28T23:59:{i % 60:02d}" + ("Z" if i % 3 else f".{i:04d}Z") for i in range(300)],
    )


def _log_of_times(tmp_path: Path, times: list[str]) -> str:
    """A log of one event per time, integrated; verified clean. Returns its URL."""
    url = f"sqlite://{tmp_path}/audit.db"
    events = [
        Event(
            id=f"t-{i}",
            time=t,
            source="portal",
            actor="user",
            action="auth.logout",
            outcome="success",
        )
        for i, t in enumerate(times)
    ]
    with open_log(url) as log:
        log.append(events)
        log.integrate()
    report = verify_store(open_log(url).store)
    assert report.ok, report.problems
    return url


@pytest.mark.parametrize(
    ("stmt", "problem"),
    [
        (
            "UPDATE audit_entries SET actor = CAST(actor AS BLOB) WHERE idx = ?",
            "a stored column differs from the leaf's value",
        ),
        (
            "UPDATE audit_entries SET event_id = CAST(event_id AS BLOB) WHERE idx = ?",
            "a stored column differs from the leaf's value",
        ),
        (
            "UPDATE audit_entries SET leaf_hash = CAST(leaf_hash AS TEXT) WHERE idx = ?",
            "stored leaf hash is not SHA-256(0x00||leaf)",
        ),
        (
            "UPDATE audit_entries SET leaf = CAST(X'00ff' || leaf AS TEXT) WHERE idx = ?",
            "leaf is not stored as bytes",
        ),
    ],
)
def test_values_of_another_type_are_named_not_a_crash(
    tmp_path: Path, stmt: str, problem: str
) -> None:
    """SQLite keeps any type in any column. A BLOB where text belongs (json_array
    refuses it) or TEXT that is not UTF-8 (the driver refuses it) used to abort verify
    with a store error; the entry is named instead."""
    url = f"sqlite://{tmp_path}/audit.db"
    with open_log(url) as log:
        log.append(_events(0, 300))
        log.integrate()
    tamper_sqlite(tmp_path / "audit.db", (stmt, (201,)))
    report = verify_store(open_log(url).store)
    assert not report.ok
    assert report.first_bad_index == 201
    assert f"entry 201: {problem}" in report.problems


def _leaf_with(leaf: bytes, **fields: object) -> tuple[bytes, bytes]:
    event = orjson.loads(leaf)
    event.update(fields)
    new = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    return new, hashlib.sha256(b"\x00" + new).digest()


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("column holds a separator", "a stored column differs from the leaf's value"),
        ("empty enclave for a null one", "a stored column differs from the leaf's value"),
        ("leaf and column hold a separator", None),  # exact: no false alarm
        ("leaf and column hold the enclave marker", None),
    ],
)
def test_postgres_packed_columns_read_back_exactly(
    pg_migrated: PgDatabase, case: str, problem: str | None
) -> None:
    """PostgreSQL packs the text columns into one str separated by U+001F (see
    UNIT_PACKING). A value holding a U+001F (refused at intake, but a store can hold
    anything) must neither hide a tampered column nor raise a false alarm: verify then
    reads that entry's columns as they are."""
    with open_log(pg_migrated.writer_url) as log:
        log.append(_events(0, 300))  # not integrated: no tile or root covers them
        leaf = log.entry(125)  # i % 5 == 0: a null enclave
    set_leaf = "leaf = %s, leaf_hash = %s"
    if case == "column holds a separator":
        sql, params = "actor = actor || E'\\x1fx'", ()
    elif case == "empty enclave for a null one":
        sql, params = "enclave = ''", ()
    elif case == "leaf and column hold a separator":
        sql, params = f"{set_leaf}, actor = %s", (*_leaf_with(leaf, actor="a\x1fb"), "a\x1fb")
    else:
        sql, params = f"{set_leaf}, enclave = %s", (*_leaf_with(leaf, enclave="\x1e"), "\x1e")
    tamper_postgres(
        pg_migrated.admin_url,
        (f"UPDATE audit_entries SET {sql} WHERE idx = 125", params),  # noqa: S608
    )
    report = verify_store(open_log(pg_migrated.writer_url).store)
    if problem is None:
        assert report.ok, report.problems
    else:
        assert report.first_bad_index == 125
        assert report.problems == (f"entry 125: {problem}",)
