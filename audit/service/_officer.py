"""Officer identity for the read API and the UI: a portal sign-in or a bootstrap token,
then a session.

Officers normally sign in through the portal's OpenID Connect provider (``_oidc``;
their portal username becomes the officer identity). The bootstrap path, for setting
up and for when the portal is down, is the bootstrap officer token: a secret kept
in a file (``--officer-token-file`` or the environment variable
``ENCLAVE_AUDIT_OFFICER_TOKEN_FILE`` naming the file), never in a URL or argv. There
is no open access: without a token file or a portal sign-in every read is refused.

Security procedure (``Officers.login``):

1. Read the token file now (so replacing the file rotates the token); refuse when it
   is missing, unreadable, readable by group or others, or shorter than 32 characters.
2. Compare the presented token with ``hmac.compare_digest``.
3. On success create a session: 32 random bytes as the cookie value, only its
   SHA-256 kept server-side, an idle limit and an absolute limit (15 min / 12 h by
   default, TIERS.md), and a separate random CSRF token bound to the session.
4. The caller MUST set the cookie ``Secure; HttpOnly; SameSite=Strict; Path=/`` and
   MUST record the login (and a failed login) as an audit event before answering.
5. After ``max_failures`` failed logins within ``failure_window`` seconds from one
   client address, that address is locked for one window (``locked_for(client)``);
   the caller MUST count the failure before anything else can fail, refuse that
   address's logins without checking the token meanwhile, and record the lockout.
   The lock is per address, not global, so that nobody can lock every officer out by
   sending wrong tokens; a 32-character random token cannot be guessed in the
   attempts a window allows in any case.

API callers may instead send the bootstrap token as ``Authorization: Bearer``; wrong
bearer tokens count towards the same per-address limit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..files import secret_file_problem

__all__ = ["BOOTSTRAP_OFFICER", "FailureThrottle", "Officer", "Officers", "Session"]

BOOTSTRAP_OFFICER = "officer:bootstrap"
_MIN_TOKEN_CHARS = 32


@dataclass(frozen=True)
class Officer:
    """Who is reading: the identity recorded as ``actor`` of every read event."""

    id: str
    via: str  # "session" | "bearer"


@dataclass(frozen=True)
class Session:
    officer: Officer
    csrf: str
    created: float
    last_seen: float


class FailureThrottle:
    """Failed logins per client address in a sliding window, and the lock they cause.

    Memory is bounded: at most ``max_clients`` addresses are tracked (idle ones are
    dropped first); beyond that, new addresses share one overflow bucket, so flooding
    from many addresses can lock only that bucket, never an address already known.
    ``None`` (a peer that is not an IP address) is one bucket of its own."""

    _OVERFLOW = "*overflow*"

    def __init__(
        self,
        *,
        max_failures: int,
        window: float,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window <= 0:
            raise ValueError("max_failures must be at least 1 and window positive")
        self._clock = clock
        self._max_failures = max_failures
        self._window = window
        self._max_clients = max_clients
        self._lock = threading.Lock()
        self._failures: dict[str | None, deque[float]] = {}
        self._locked_until: dict[str | None, float] = {}

    def _key(self, client: str | None, now: float) -> str | None:
        if client in self._failures or client in self._locked_until:
            return client
        if len(self._failures) + len(self._locked_until) >= self._max_clients:
            self._expire(now)
            if len(self._failures) + len(self._locked_until) >= self._max_clients:
                return self._OVERFLOW
        return client

    def _expire(self, now: float) -> None:
        for k in [k for k, q in self._failures.items() if not q or now - q[-1] > self._window]:
            del self._failures[k]
        for k in [k for k, until in self._locked_until.items() if until <= now]:
            del self._locked_until[k]

    def locked_for(self, client: str | None) -> float:
        """Seconds ``client`` stays locked (0 when open)."""
        now = self._clock()
        with self._lock:
            until = self._locked_until.get(self._key(client, now), 0.0)
        return max(0.0, until - now)

    def note_failure(self, client: str | None) -> bool:
        """Count a failure from ``client``; True when this one locks it for a window."""
        now = self._clock()
        with self._lock:
            key = self._key(client, now)
            q = self._failures.setdefault(key, deque())
            q.append(now)
            while q and now - q[0] > self._window:
                q.popleft()
            if len(q) >= self._max_failures:
                del self._failures[key]
                self._locked_until[key] = now + self._window
                return True
            return False


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class Officers:
    """Bootstrap-token checks and the server-side session table."""

    def __init__(
        self,
        *,
        token_file: Path | None,
        idle_seconds: float = 15 * 60,
        max_seconds: float = 12 * 3600,
        max_failures: int = 10,
        failure_window: float = 60.0,
    ) -> None:
        self._token_file = token_file
        self._idle = idle_seconds
        self._max = max_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.throttle = FailureThrottle(max_failures=max_failures, window=failure_window)

    # -- throttle: a client address locks after repeated failures ------------------------
    def locked_for(self, client: str | None) -> float:
        """Seconds logins from ``client`` stay refused (0 when open)."""
        return self.throttle.locked_for(client)

    def note_failure(self, client: str | None) -> bool:
        """Count a failed login from ``client``; True when it locks that address."""
        return self.throttle.note_failure(client)

    @property
    def configured(self) -> bool:
        return self._token_file is not None

    @staticmethod
    def check_file(path: Path) -> str | None:
        """Why the token file cannot be used (one sentence), or None when it can."""
        return secret_file_problem(path, what="officer token", min_chars=_MIN_TOKEN_CHARS)

    def _expected(self) -> str | None:
        if self._token_file is None:
            return None
        try:
            if self._token_file.stat().st_mode & 0o077:
                return None  # readable by group or others: refuse (see check_file)
            token = self._token_file.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return token if len(token) >= _MIN_TOKEN_CHARS else None

    def check_token(self, presented: str) -> Officer | None:
        """Steps 1-2: the bootstrap officer, or None."""
        expected = self._expected()
        if expected is None or not presented:
            return None
        if not hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8")):
            return None
        return Officer(id=BOOTSTRAP_OFFICER, via="bearer")

    def login(self, presented: str) -> tuple[str, Session] | None:
        """Steps 1-3: a new session cookie value and its session, or None."""
        officer = self.check_token(presented)
        if officer is None:
            return None
        return self.start_session(officer_id=officer.id)

    def start_session(self, *, officer_id: str) -> tuple[str, Session]:
        """Step 3 for an officer already proven otherwise (the portal's OIDC sign-in)."""
        cookie = secrets.token_urlsafe(32)
        now = time.time()
        sess = Session(
            officer=Officer(id=officer_id, via="session"),
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_seen=now,
        )
        with self._lock:
            self._sessions[_digest(cookie)] = sess
        return cookie, sess

    def session(self, cookie: str | None) -> Session | None:
        """The live session for a cookie value (touching its idle timer), or None."""
        if not cookie:
            return None
        key = _digest(cookie)
        now = time.time()
        with self._lock:
            sess = self._sessions.get(key)
            if sess is None:
                return None
            if now - sess.last_seen > self._idle or now - sess.created > self._max:
                del self._sessions[key]
                return None
            sess = replace(sess, last_seen=now)
            self._sessions[key] = sess
            return sess

    def logout(self, cookie: str | None) -> None:
        if cookie:
            with self._lock:
                self._sessions.pop(_digest(cookie), None)

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            session.csrf.encode("utf-8"), (presented or "").encode("utf-8")
        )
