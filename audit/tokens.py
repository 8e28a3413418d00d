"""Per-source intake tokens for the audit service: issued, rotated and revoked.

A token looks like ``eat_<id>_<secret>``. Only a SHA-256 hash of the whole token is
stored (the secret is 32 random bytes, so a fast hash is enough; there is nothing to
brute-force), in a JSON file written atomically. Presented tokens are compared with
``hmac.compare_digest``. A token authorises exactly one ``source``: the service
refuses events from any other source under it. A token issued for one enclave (a
project's hub or workspace) may in addition only submit that enclave's events; hub and
workspace tokens must name their enclave, and no token is ever issued for the source
``audit`` (the service writes its own events, never through intake).

Security procedure for checking a presented token (``TokenStore.authenticate``):

1. Reject anything that is not ``eat_<id>_<secret>`` with the expected lengths.
2. Reload the file if it changed on disk (looking at most every ``RELOAD_SECONDS``),
   so a revocation applies without a restart, within a quarter of a second.
3. Look the record up by ``id``; an unknown id fails.
4. Compare ``sha256(token)`` with the stored hash in constant time; a mismatch fails.
5. Fail if the record is revoked, or rotated and past its grace period.
6. Fail if the record could not be issued today (``scope_problem``): a token for
   ``audit``, or a hub or workspace token bound to no enclave, in an older file.
7. Return the record; the caller MUST check every event's ``source`` against the
   record's, and, when the record names an ``enclave``, every event's ``enclave``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .files import write_atomic

__all__ = [
    "ENCLAVE_SOURCES",
    "RELOAD_SECONDS",
    "SOURCES",
    "IssuedToken",
    "TokenError",
    "TokenRecord",
    "TokenStore",
    "enclave_name_problem",
    "scope_problem",
]

#: The event sources that may hold intake tokens (DESIGN.md "Audit"); ``audit`` is the
#: service itself, which writes its own events: no token is issued for it.
SOURCES: frozenset[str] = frozenset({"portal", "hub", "workspace", "controller", "cli"})
#: sources that run per enclave: their tokens must be bound to one
ENCLAVE_SOURCES: frozenset[str] = frozenset({"hub", "workspace"})

#: how often ``authenticate`` looks at the token file for changes (seconds)
RELOAD_SECONDS = 0.25

_PREFIX = "eat_"
_ID_BYTES = 6
_ENCLAVE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # as events' enclave field
_SECRET_BYTES = 32


class TokenError(Exception):
    """A token operation failed: bad input, unknown id, or an unreadable store."""


@dataclass(frozen=True)
class TokenRecord:
    """One issued token, as stored: never the token itself, only its hash."""

    id: str
    source: str
    sha256: str
    created: float
    label: str = ""
    revoked: float | None = None
    #: set when the token was rotated: it stays valid until this time (grace period)
    expires: float | None = None
    #: set for a per-enclave component (hub, workspace): only this enclave's events
    enclave: str | None = None

    def active(self, *, now: float) -> bool:
        """True when the token may be used at ``now``."""
        if self.revoked is not None:
            return False
        return self.expires is None or now < self.expires


@dataclass(frozen=True)
class IssuedToken:
    """What ``issue`` returns: the secret token (shown once) and its record."""

    token: str
    record: TokenRecord


def enclave_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an enclave name (one sentence), or None."""
    if _ENCLAVE_RE.fullmatch(name):
        return None
    return f"{name[:40]!r} is not an enclave name (letters, digits, '.', '_', '-'; at most 128)"


def scope_problem(*, source: str, enclave: str | None) -> str | None:
    """Why a token for ``source`` (bound to ``enclave``) cannot be issued, or None."""
    if source == "audit":
        return (
            "no token is issued for source 'audit': the audit service writes its own "
            "events, never through intake"
        )
    if source not in SOURCES:
        return f"unknown source {source!r}; expected one of {', '.join(sorted(SOURCES))}"
    if enclave is None:
        if source in ENCLAVE_SOURCES:
            return f"a {source} token must be bound to its enclave (--enclave NAME)"
        return None
    return enclave_name_problem(enclave)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _split(token: str) -> str | None:
    """Return the id of a well-formed token, or None."""
    if not token.startswith(_PREFIX):
        return None
    rest = token[len(_PREFIX) :]
    tid, sep, secret = rest.partition("_")
    if not sep or len(tid) != 2 * _ID_BYTES or len(secret) < 40:
        return None
    if not all(c in "0123456789abcdef" for c in tid):
        return None
    return tid


Recorder = Callable[["TokenRecord"], None]
"""Called with the changed record before the token file is written (see ``_commit``)."""


class TokenStore:
    """The token file: a JSON list of ``TokenRecord``; every change is atomic."""

    def __init__(self, *, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._records: dict[str, TokenRecord] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._load()

    @property
    def path(self) -> Path:
        return self._path

    # -- persistence ------------------------------------------------------------
    def _load(self, *, max_age: float = 0.0) -> None:
        """Re-read the file if it changed; with ``max_age``, look at most that often."""
        now = time.monotonic()
        if max_age and now - self._checked < max_age:
            return
        self._checked = now
        try:
            st = self._path.stat()
        except FileNotFoundError:
            self._records, self._stamp = {}, None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            records = {r["id"]: TokenRecord(**r) for r in raw["tokens"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TokenError(f"the token file {self._path} is unreadable: {e}") from e
        self._records, self._stamp = records, stamp

    def _save(self) -> None:
        data = json.dumps(
            {"version": 1, "tokens": [asdict(r) for r in self._records.values()]},
            indent=1,
            sort_keys=True,
        ).encode("utf-8")
        write_atomic(self._path, data)
        st = self._path.stat()
        self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)

    # -- operations -------------------------------------------------------------
    def _commit(
        self, before: dict[str, TokenRecord], record: Recorder | None, rec: TokenRecord
    ) -> None:
        """Run ``record`` on the change, then save; if ``record`` raises, nothing changed.

        ``record`` is where the caller appends the audit event: the event is durable
        before the file changes, so no change ever goes unrecorded."""
        if record is not None:
            try:
                record(rec)
            except BaseException:
                self._records = before
                raise
        self._save()

    def issue(
        self,
        *,
        source: str,
        label: str = "",
        enclave: str | None = None,
        record: Recorder | None = None,
    ) -> IssuedToken:
        """Make a new token for ``source`` (and only ``enclave``'s events, if given);
        the returned secret is never stored."""
        problem = scope_problem(source=source, enclave=enclave)
        if problem:
            raise TokenError(problem)
        with self._lock:
            self._load()
            tid = secrets.token_hex(_ID_BYTES)
            token = f"{_PREFIX}{tid}_{secrets.token_urlsafe(_SECRET_BYTES)}"
            rec = TokenRecord(
                id=tid,
                source=source,
                sha256=_hash(token),
                created=time.time(),
                label=label,
                enclave=enclave,
            )
            before = dict(self._records)
            self._records[tid] = rec
            self._commit(before, record, rec)
            return IssuedToken(token=token, record=rec)

    def revoke(self, *, token_id: str, record: Recorder | None = None) -> TokenRecord:
        """Revoke; a running service refuses the token within ``RELOAD_SECONDS``.

        Revoking a revoked token changes nothing and records nothing."""
        with self._lock:
            self._load()
            rec = self._get(token_id)
            if rec.revoked is None:
                before = dict(self._records)
                rec = replace(rec, revoked=time.time())
                self._records[token_id] = rec
                self._commit(before, record, rec)
            return rec

    def rotate(
        self, *, token_id: str, grace_seconds: float = 3600.0, record: Recorder | None = None
    ) -> IssuedToken:
        """Issue a successor for the same source; the old one expires after the grace."""
        if grace_seconds < 0:
            raise TokenError("the grace period must not be negative")
        with self._lock:
            self._load()
            old = self._get(token_id)
            if not old.active(now=time.time()):
                raise TokenError(f"token {token_id} is no longer active; issue a new one")
            problem = scope_problem(source=old.source, enclave=old.enclave)
            if problem:  # an older file's token the service refuses: do not renew it
                raise TokenError(f"token {token_id} cannot be rotated: {problem}")
            before = dict(self._records)
            self._records[token_id] = replace(old, expires=time.time() + grace_seconds)
            tid = secrets.token_hex(_ID_BYTES)
            token = f"{_PREFIX}{tid}_{secrets.token_urlsafe(_SECRET_BYTES)}"
            rec = TokenRecord(
                id=tid,
                source=old.source,
                sha256=_hash(token),
                created=time.time(),
                label=old.label,
                enclave=old.enclave,
            )
            self._records[tid] = rec
            self._commit(before, record, rec)
            return IssuedToken(token=token, record=rec)

    def list(self) -> list[TokenRecord]:
        with self._lock:
            self._load()
            return sorted(self._records.values(), key=lambda r: r.created)

    def _get(self, token_id: str) -> TokenRecord:
        try:
            return self._records[token_id]
        except KeyError:
            raise TokenError(f"no token with id {token_id!r}") from None

    def authenticate(self, token: str) -> str | None:
        """Return the source the token may submit for, or None (see the module steps)."""
        rec = self.authenticate_record(token)
        return rec.source if rec is not None else None

    def authenticate_record(self, token: str) -> TokenRecord | None:
        """Return the token's record (its source and enclave), or None (module steps)."""
        tid = _split(token)  # step 1
        if tid is None:
            return None
        with self._lock:
            try:
                self._load(max_age=RELOAD_SECONDS)  # step 2
            except TokenError:
                return None  # fail closed on an unreadable file
            rec = self._records.get(tid)  # step 3
        if rec is None:
            return None
        if not hmac.compare_digest(_hash(token), rec.sha256):  # step 4
            return None
        if not rec.active(now=time.time()):  # step 5
            return None
        if scope_problem(source=rec.source, enclave=rec.enclave) is not None:  # step 6
            return None
        return rec  # step 7
