"""Audit events: the strict model, parsing of untrusted input, canonical bytes.

An :class:`Event` validates itself on construction (fields from DESIGN.md "Audit";
``action`` from the registry in :mod:`audit._actions`; ``details`` against that
action's schema). What goes into the Merkle tree is the *leaf*: the event's fields
plus the log's own receipt time (``received``) and the action's schema version
(``schema``), serialised as RFC 8785 (JCS) canonical JSON.

Canonical bytes: :func:`jcs` (the ``rfc8785`` package) is the definition. The hot
path uses ``orjson`` with sorted keys, which gives byte-identical output on the domain
events are restricted to, and tests check the two against each other:

1. no floats anywhere (JCS number formatting is where serialisers differ);
2. integers within ``±(2**53 - 1)`` (JCS's safe range; rfc8785 rejects others);
3. every object key is ASCII (JCS sorts by UTF-16 code units, orjson by code points:
   the two orders agree on ASCII);
4. strings are valid Unicode without lone surrogates (both escape exactly ``"``,
   ``\\`` and the C0 controls, the same way, and emit everything else as UTF-8).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

import orjson
import rfc8785

from ._actions import ActionSpec, action_spec
from .errors import EventError

__all__ = [
    "EVENT_FIELDS",
    "MAX_EVENT_BYTES",
    "MAX_TIME_AFTER_RECEIPT_NS",
    "MAX_TIME_BEFORE_RECEIPT_NS",
    "OUTCOMES",
    "SOURCES",
    "Event",
    "StoredEvent",
    "check_time_near",
    "encode_leaf",
    "jcs",
    "parse_event",
    "parse_leaf",
    "time_ns",
    "utc_now",
    "visible_text",
]

Source = Literal["portal", "hub", "workspace", "controller", "audit", "cli"]
Outcome = Literal["success", "failure", "denied", "error"]
SOURCES: Final[tuple[str, ...]] = get_args(Source)
OUTCOMES: Final[tuple[str, ...]] = get_args(Outcome)
EVENT_FIELDS: Final[tuple[str, ...]] = (
    "id",
    "time",
    "source",
    "actor",
    "action",
    "enclave",
    "outcome",
    "client_ip",
    "details",
)
_REQUIRED: Final[frozenset[str]] = frozenset(EVENT_FIELDS) - {"enclave", "client_ip", "details"}

MAX_EVENT_BYTES: Final[int] = 64 * 1024
"""Largest canonical size of one event (the leaf adds the receipt time and version)."""

_MAX_SAFE_INT: Final[int] = 2**53 - 1
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_ACTION_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_ENCLAVE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
# \d also matches other scripts' digits, and logs written before intake refused them
# hold such times: stored leaves keep parsing (and verifying) with this pattern, while
# parse_event refuses them in new input (RFC 3339's DIGIT is ASCII).
_TIME_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d{1,9})?Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_MAX_ACTOR: Final[int] = 256
# What the stores hold a time as: a signed 64-bit count of nanoseconds (1677 to 2262).
_MIN_NS: Final[int] = -(2**63)
_MAX_NS: Final[int] = 2**63 - 1
# Characters that display as nothing or as something else: C0 and C1 controls (Cc),
# format characters such as U+202E RIGHT-TO-LEFT OVERRIDE and zero-width ones (Cf), and
# the line and paragraph separators U+2028 and U+2029 (Zl, Zp).
_INVISIBLE_CATEGORIES: Final[frozenset[str]] = frozenset({"Cc", "Cf", "Zl", "Zp"})

MAX_TIME_BEFORE_RECEIPT_NS: Final[int] = 30 * 86_400 * 1_000_000_000
"""How far before its receipt an event's ``time`` may lie at intake (30 days): longer
than a client's spool is expected to wait out an outage, and the same for every tier."""
MAX_TIME_AFTER_RECEIPT_NS: Final[int] = 5 * 60 * 1_000_000_000
"""How far after its receipt an event's ``time`` may lie at intake (5 minutes of clock
skew), the same for every tier."""


def utc_now() -> str:
    """The current UTC time as RFC 3339 with microseconds and ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical JSON of ``value``: the definition the fast path must match."""
    out: bytes = rfc8785.dumps(value)
    return out


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def time_ns(value: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 UTC time as events carry it.

    Raises :class:`EventError` (field ``time``) when ``value`` is not one.
    """
    return _check_time(value, "time")


def _check_time(value: object, name: str) -> int:
    if not isinstance(value, str):
        raise EventError("must be a string, RFC 3339 UTC like 2026-11-26T10:00:00Z", field=name)
    m = _TIME_RE.fullmatch(value)
    if m is None:
        raise EventError(
            f"{value[:40]!r} is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.fraction]Z)", field=name
        )
    ys, mos, ds, hhs, mis, sss, frac = m.groups()
    y, mo, d, hh, mi, ss = int(ys), int(mos), int(ds), int(hhs), int(mis), int(sss)
    if not (1 <= mo <= 12 and 1 <= d <= _month_days(y, mo) and hh < 24 and mi < 60 and ss < 60):
        raise EventError(f"{value!r} is not a valid date and time", field=name)
    ns = int(frac[1:].ljust(9, "0")) if frac else 0
    total = (
        ((_days_from_civil(y, mo, d) * 24 + hh) * 60 + mi) * 60_000_000_000
        + ss * 1_000_000_000
        + ns
    )
    if not _MIN_NS <= total <= _MAX_NS:
        raise EventError(
            f"{value!r} is outside the times the log can hold "
            "(1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z)",
            field=name,
        )
    return total


def check_time_near(event: Event, *, received_ns: int) -> None:
    """Refuse ``event`` when its ``time`` is implausibly far from its receipt.

    At intake only (stored leaves are never re-checked): ``time`` may lie at most
    :data:`MAX_TIME_BEFORE_RECEIPT_NS` before ``received_ns`` and at most
    :data:`MAX_TIME_AFTER_RECEIPT_NS` after it. Raises :class:`EventError` (``time``).
    """
    if event.time_ns < received_ns - MAX_TIME_BEFORE_RECEIPT_NS:
        raise EventError(
            f"{event.time!r} is more than 30 days before the log received it", field="time"
        )
    if event.time_ns > received_ns + MAX_TIME_AFTER_RECEIPT_NS:
        raise EventError(
            f"{event.time!r} is more than 5 minutes after the log received it", field="time"
        )


#: What a ``multiline`` detail field (code a researcher ran) may hold besides visible text.
_MULTILINE_ALLOWED: Final[frozenset[str]] = frozenset({"\n", "\t"})


def _invisible(value: str, *, multiline: bool = False) -> str | None:
    """The first character of ``value`` that displays as nothing or as something
    else, as ``U+XXXX``, or None. ``multiline`` allows line feeds and tabs."""
    for ch in value:
        if unicodedata.category(ch) in _INVISIBLE_CATEGORIES:
            if multiline and ch in _MULTILINE_ALLOWED:
                continue
            return f"U+{ord(ch):04X}"
    return None


def visible_text(value: str) -> str:
    """``value`` with every invisible or bidirectional character written as a visible
    ``\\u202e``-style escape (for showing stored text that predates the intake check)."""
    if _invisible(value) is None:
        return value
    return "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in _INVISIBLE_CATEGORIES else ch
        for ch in value
    )


def _check_visible(event: Event) -> None:
    """Refuse invisible and bidirectional characters in ``actor`` and text details
    (intake only: leaves stored before this check keep parsing, see parse_leaf)."""
    bad = _invisible(event.actor)
    if bad is not None:
        raise EventError(f"contains the invisible or bidirectional character {bad}", field="actor")
    registered = action_spec(event.action)
    fields = registered.fields if registered is not None else MappingProxyType({})
    for key, value in event.details.items():
        spec = fields.get(key)
        multiline = spec is not None and spec.multiline
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, str):
                bad = _invisible(item, multiline=multiline)
                if bad is not None:
                    raise EventError(
                        f"contains the invisible or bidirectional character {bad}",
                        field=f"details.{key}",
                    )


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _check_text(value: object, name: str, *, max_len: int) -> str:
    if not isinstance(value, str):
        raise EventError("must be a string", field=name)
    if not value:
        raise EventError("must not be empty", field=name)
    if len(value) > max_len:
        raise EventError(f"longer than {max_len} characters", field=name)
    if _CONTROL_RE.search(value):
        raise EventError("contains a control character", field=name)
    _check_unicode(value, name)
    return value


def _check_unicode(value: str, name: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EventError("contains a lone surrogate (not valid Unicode)", field=name) from None


def _check_details(details: object, spec: ActionSpec) -> dict[str, object]:
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise EventError("must be a JSON object", field="details")
    out: dict[str, object] = {}
    for key, value in details.items():
        where = f"details.{key}"
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise EventError(
                "detail keys are lower-case ASCII identifiers", field=f"details.{key!s:.40}"
            )
        fspec = spec.fields.get(key)
        if fspec is None:
            allowed = ", ".join(sorted(spec.fields)) or "none"
            raise EventError(
                f"is not a field of {spec.name} v{spec.version} (allowed: {allowed})", field=where
            )
        if value is None:
            if fspec.required:
                raise EventError("is required and must not be null", field=where)
            out[key] = None
            continue
        if fspec.type == "str":
            if not isinstance(value, str):
                raise EventError("must be a string", field=where)
            if len(value) > fspec.max_len:
                raise EventError(f"longer than {fspec.max_len} characters", field=where)
            _check_unicode(value, where)
            if fspec.choices and value not in fspec.choices:
                raise EventError(f"must be one of {', '.join(fspec.choices)}", field=where)
        elif fspec.type == "int":
            if type(value) is not int:
                raise EventError("must be an integer (floats are not allowed)", field=where)
            if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
                raise EventError("integer outside ±(2**53-1)", field=where)
        elif fspec.type == "bool":
            if type(value) is not bool:
                raise EventError("must be true or false", field=where)
        else:  # str_list
            if not isinstance(value, (list, tuple)):
                raise EventError("must be a list of strings", field=where)
            if len(value) > 64:
                raise EventError("has more than 64 items", field=where)
            for item in value:
                if not isinstance(item, str) or len(item) > fspec.max_len:
                    raise EventError(
                        f"items must be strings of at most {fspec.max_len} characters", field=where
                    )
                _check_unicode(item, where)
            value = list(value)
        out[key] = value
    for key, fspec in spec.fields.items():
        if fspec.required and key not in out:
            raise EventError(f"is required by {spec.name} v{spec.version}", field=f"details.{key}")
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One audit event as a sender claims it; validated on construction.

    Raises :class:`~audit.errors.EventError` naming the first bad field.
    """

    id: str
    time: str
    source: str
    actor: str
    action: str
    outcome: str
    enclave: str | None = None
    client_ip: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    _details_json: bytes = field(init=False, repr=False, compare=False)
    _schema: int = field(init=False, repr=False, compare=False)
    _time_ns: int = field(init=False, repr=False, compare=False)
    _head: bytes = field(init=False, repr=False, compare=False)
    _tail: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_RE.fullmatch(self.id):
            raise EventError("must be 1-128 characters of A-Z a-z 0-9 . _ : -", field="id")
        object.__setattr__(self, "_time_ns", _check_time(self.time, "time"))
        if self.source not in SOURCES:
            raise EventError(f"must be one of {', '.join(SOURCES)}", field="source")
        _check_text(self.actor, "actor", max_len=_MAX_ACTOR)
        if not isinstance(self.action, str) or not _ACTION_RE.fullmatch(self.action):
            raise EventError(
                "must be a dotted lower-case name like auth.factor.verified", field="action"
            )
        spec = action_spec(self.action)
        if spec is None:
            raise EventError(f"{self.action!r} is not a registered action", field="action")
        if self.outcome not in OUTCOMES:
            raise EventError(f"must be one of {', '.join(OUTCOMES)}", field="outcome")
        if self.enclave is not None and (
            not isinstance(self.enclave, str) or not _ENCLAVE_RE.fullmatch(self.enclave)
        ):
            raise EventError(
                "must be null or 1-128 characters of A-Z a-z 0-9 . _ -", field="enclave"
            )
        if self.client_ip is not None:
            if not isinstance(self.client_ip, str):
                raise EventError("must be null or an IP address string", field="client_ip")
            try:
                canonical = str(ipaddress.ip_address(self.client_ip))
            except ValueError:
                raise EventError(
                    f"{self.client_ip[:64]!r} is not an IP address", field="client_ip"
                ) from None
            if canonical != self.client_ip:
                raise EventError(
                    f"write the address in canonical form: {canonical}", field="client_ip"
                )
        details = _check_details(self.details, spec)
        details_json = orjson.dumps(details, option=orjson.OPT_SORT_KEYS)
        frozen = MappingProxyType(
            {k: tuple(v) if isinstance(v, list) else v for k, v in details.items()}
        )
        object.__setattr__(self, "details", frozen)
        object.__setattr__(self, "_details_json", details_json)
        object.__setattr__(self, "_schema", spec.version)
        whole = orjson.dumps(self._fields(), option=orjson.OPT_SORT_KEYS)
        # JCS order puts "received" and "schema" between "outcome" and "source": keep the
        # canonical bytes split there so a leaf is two concatenations (see encode_leaf).
        tail = (
            b',"source":' + orjson.dumps(self.source) + b',"time":' + orjson.dumps(self.time) + b"}"
        )
        assert whole.endswith(tail)
        object.__setattr__(self, "_head", whole[: -len(tail)])
        object.__setattr__(self, "_tail", tail)
        size = len(whole)
        if size > MAX_EVENT_BYTES:
            raise EventError(
                f"event is {size} bytes, more than the {MAX_EVENT_BYTES}-byte limit",
                field="details",
            )

    @classmethod
    def new(
        cls,
        *,
        source: str,
        actor: str,
        action: str,
        outcome: str,
        enclave: str | None = None,
        client_ip: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Event:
        """An event with a fresh random ``id`` and the current UTC ``time``."""
        return cls(
            id=uuid.uuid4().hex,
            time=utc_now(),
            source=source,
            actor=actor,
            action=action,
            outcome=outcome,
            enclave=enclave,
            client_ip=client_ip,
            details=dict(details or {}),
        )

    @property
    def time_ns(self) -> int:
        """The sender's ``time`` as nanoseconds since the epoch."""
        return self._time_ns

    @property
    def schema_version(self) -> int:
        """The schema version of ``action`` this event was validated against."""
        return self._schema

    def _fields(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "actor": self.actor,
            "client_ip": self.client_ip,
            "details": orjson.Fragment(self._details_json),
            "enclave": self.enclave,
            "id": self.id,
            "outcome": self.outcome,
            "source": self.source,
            "time": self.time,
        }

    def canonical(self) -> bytes:
        """The event's RFC 8785 canonical JSON (without receipt time)."""
        return self._head + self._tail

    def to_dict(self) -> dict[str, Any]:
        """The event as plain JSON-compatible data (a fresh copy)."""
        d = self._fields()
        d["details"] = orjson.loads(self._details_json)
        return d


_RECEIVED_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


def encode_leaf(event: Event, *, received: str) -> bytes:
    """The exact leaf bytes for ``event`` received by the log at ``received``.

    Equal to ``jcs(event fields + received + schema)``: the event's canonical bytes
    with the two members spliced in at their sorted place (``received`` is plain ASCII,
    so its JSON string needs no escaping). Tests check this against rfc8785.
    """
    if not _RECEIVED_RE.fullmatch(received):
        raise EventError(f"receipt time {received!r} is not RFC 3339 UTC", field="received")
    return b'%s,"received":"%s","schema":%d%s' % (
        event._head,
        received.encode("ascii"),
        event._schema,
        event._tail,
    )


def parse_event(data: object, *, line: int | None = None) -> Event:
    """Parse untrusted input (a JSON text, bytes, or a decoded mapping) into an Event.

    Unknown and missing fields are refused by name; ``line`` (1-based) is attached to
    the error so callers reading JSON lines can say where the problem is.
    """
    try:
        if isinstance(data, (bytes, bytearray, memoryview, str)):
            raw = (
                bytes(data) if not isinstance(data, str) else data.encode("utf-8", "surrogatepass")
            )
            if len(raw) > 2 * MAX_EVENT_BYTES:
                raise EventError(
                    f"input is {len(raw)} bytes, far over the {MAX_EVENT_BYTES}-byte limit"
                )
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                raise EventError(f"malformed JSON ({e.msg} at character {e.pos})") from None
        if not isinstance(data, Mapping):
            raise EventError("an event must be a JSON object")
        for key in data:
            if key not in EVENT_FIELDS:
                raise EventError("unknown field", field=str(key)[:64])
        for key in EVENT_FIELDS:
            if key not in data and key in _REQUIRED:
                raise EventError("missing required field", field=key)
        for key in ("enclave", "client_ip"):
            if key not in data:
                raise EventError("missing field (use null when there is none)", field=key)
        if "details" not in data:
            raise EventError("missing field (use {} when there are none)", field="details")
        t = data["time"]
        if isinstance(t, str) and not t.isascii():
            raise EventError(
                f"{t[:40]!r} is not RFC 3339 UTC: its digits must be ASCII 0-9", field="time"
            )
        event = Event(**{k: data[k] for k in EVENT_FIELDS})
        _check_visible(event)
        return event
    except EventError as e:
        raise (e.at_line(line) if line is not None else e) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """An event as the log holds it: its index, receipt time and exact leaf bytes."""

    index: int
    event: Event
    received: str
    schema: int
    leaf: bytes

    def to_dict(self) -> dict[str, Any]:
        """The leaf as JSON-compatible data plus ``index``."""
        d = dict(orjson.loads(self.leaf))
        d["index"] = self.index
        return d


def parse_leaf(leaf: bytes, *, index: int) -> StoredEvent:
    """Rebuild a :class:`StoredEvent` from stored leaf bytes (no re-validation of history
    beyond the model's: a stored leaf that no longer validates raises EventError)."""
    d = orjson.loads(leaf)
    received = d.pop("received")
    schema = d.pop("schema")
    ev = Event(**d)
    return StoredEvent(index=index, event=ev, received=received, schema=schema, leaf=bytes(leaf))


def _ensure_sequence(events: object) -> Sequence[Event]:
    if not isinstance(events, Sequence) or not all(isinstance(e, Event) for e in events):
        raise EventError("append takes a sequence of Event objects")
    return events
