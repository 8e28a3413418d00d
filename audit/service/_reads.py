"""The officers' read model: filters, pages of events, CSV export lines, one event with
its leaf bytes, inclusion proofs and the checkpoint history.

Used by the read API (``_read_api.py``) and the officer UI (``audit.ui``); it knows the
log and the service state, not the routes that call it.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends
from pydantic import BaseModel, Field

from .._events import EVENT_FIELDS
from .._store import Query as CoreQuery
from .._store import parse_time_ns
from ..errors import ConfigError
from ._core import b64, stored_dict
from ._errors import BadRequest, NotFound
from ._state import ServiceState

__all__ = [
    "ConsistencyProofBody",
    "EventPage",
    "Filters",
    "FiltersDep",
    "InclusionProofBody",
    "checkpoint_history",
    "csv_lines",
    "event_detail",
    "inclusion_proof",
    "latest_checkpoint_text",
    "query_page",
]


class EventPage(BaseModel):
    events: list[dict[str, Any]]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null at the end"
    )


class InclusionProofBody(BaseModel):
    index: int
    size: int
    entry: str = Field(description="the exact leaf bytes, base64")
    leaf_hash: str
    hashes: list[str]
    root_hash: str = Field(description="the root of the tree of `size`, base64")
    checkpoint: str | None = Field(
        default=None, description="the signed checkpoint of `size` (when `size` was omitted)"
    )


class ConsistencyProofBody(BaseModel):
    old: int
    size: int
    hashes: list[str]


def _parse_time(name: str, value: str | None) -> dt.datetime | None:
    if value is None or value == "":
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"query parameter {name!r} is not an RFC 3339 time: {value[:40]!r}"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    try:
        parse_time_ns(t)  # within what the store holds, so no query can overflow
    except (ConfigError, OverflowError):
        raise BadRequest(
            f"query parameter {name!r}: {value[:40]!r} is outside 1677 to 2262"
        ) from None
    return t


class Filters(BaseModel):
    """The officer filters of the read API (all optional, combined with AND)."""

    actor: str | None = None
    enclave: str | None = None
    action: str | None = None
    outcome: str | None = None
    source: str | None = None
    since: str | None = Field(default=None, description="RFC 3339, inclusive")
    until: str | None = Field(default=None, description="RFC 3339, exclusive")
    order: Literal["asc", "desc"] = Field(
        default="asc", description="by the sender's time: asc (oldest first) or desc"
    )

    def target(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.model_dump().items()
            if v not in (None, "") and not (k == "order" and v == "asc")
        }

    def query(self) -> Any:
        kw: dict[str, Any] = {
            k: v
            for k, v in self.model_dump().items()
            if k not in ("since", "until", "order") and v not in (None, "")
        }
        kw["newest_first"] = self.order == "desc"
        since = _parse_time("since", self.since)
        until = _parse_time("until", self.until)
        if since is not None:
            kw["since"] = since
        if until is not None:
            kw["until"] = until
        try:
            return CoreQuery(**kw)
        except (ValueError, TypeError) as e:
            raise BadRequest(f"bad filter: {e}") from None


def _filters(
    actor: str | None = None,
    enclave: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    source: str | None = None,
    since: str | None = None,
    until: str | None = None,
    order: Literal["asc", "desc"] = "asc",
) -> Filters:
    return Filters(
        actor=actor,
        enclave=enclave,
        action=action,
        outcome=outcome,
        source=source,
        since=since,
        until=until,
        order=order,
    )


FiltersDep = Annotated[Filters, Depends(_filters)]


async def latest_checkpoint_text(st: ServiceState) -> str:
    """The latest signed checkpoint note (404 before the log signed one)."""
    cp = await st.call(st.log.latest_checkpoint)
    if cp is None:
        raise NotFound("the log has not signed a checkpoint yet")
    return str(cp.text)


async def query_page(
    st: ServiceState, filters: Filters, *, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    q = filters.query()
    try:
        rows, nxt = await st.call(st.log.query, q, cursor=cursor, limit=limit)
    except ValueError as e:
        raise BadRequest(f"bad cursor or filter: {e}") from None
    return [stored_dict(r) for r in rows], (None if nxt is None else str(nxt))


#: The CSV columns: the log's index and receipt time, then the event's fields with its
#: id moved after ``client_ip`` (index, received, time, source, ..., client_ip, id, details).
_CSV_FIELDS = ("index", "received", *EVENT_FIELDS[1:-1], "id", "details")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    else:
        text = str(value)
    # spreadsheet formula injection: a leading = + - @ (or tab/CR) is made inert
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


def csv_lines(events: list[dict[str, Any]], *, header: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    if header:
        w.writerow(_CSV_FIELDS)
    for e in events:
        w.writerow([_csv_cell(e.get(k)) for k in _CSV_FIELDS])
    return buf.getvalue()


async def event_detail(st: ServiceState, index: int) -> dict[str, Any]:
    size = await st.call(st.log.sequenced)
    if index < 0 or index >= size:
        raise NotFound(f"there is no entry {index}; the log holds {size}")
    entry: bytes = await st.call(st.log.entry, index)
    out: dict[str, Any] = {"index": index, "entry": b64(entry)}
    out["event"] = stored_dict(await st.call(st.log.stored_event, index))
    return out


async def inclusion_proof(st: ServiceState, *, index: int, size: int | None) -> InclusionProofBody:
    """The proof for ``index`` at ``size``; without ``size``, at the latest signed
    checkpoint that covers ``index`` (signing one now if none does yet)."""
    checkpoint: str | None = None
    if size is None:
        cp = await st.call(st.log.latest_checkpoint)
        if cp is None or index >= int(cp.size):
            cp = await asyncio.to_thread(st.publish_now, trigger="demand")
        size = int(cp.size)
        checkpoint = cp.text
    tree = await st.call(st.log.size)
    if not (0 <= index < size <= tree):
        raise NotFound(
            f"no inclusion proof for index {index} in size {size}; the tree has {tree} entries"
        )
    entry: bytes = await st.call(st.log.entry, index)
    hashes: list[bytes] = await st.call(st.log.inclusion_proof, index, size)
    root: bytes = await st.call(st.log.root_hash, size)
    leaf = hashlib.sha256(b"\x00" + entry).digest()
    return InclusionProofBody(
        index=index,
        size=size,
        entry=b64(entry),
        leaf_hash=b64(leaf),
        hashes=[b64(h) for h in hashes],
        root_hash=b64(root),
        checkpoint=checkpoint,
    )


async def checkpoint_history(st: ServiceState) -> list[dict[str, Any]]:
    cps = await st.call(st.log.checkpoints)
    return [{"size": int(c.size), "root_hash": b64(c.root_hash), "text": c.text} for c in cps]
