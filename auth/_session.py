"""The sign-in session without HTTP: the login stage machine, expiry and CSRF.

The web layer keeps a session's state as JSON in the store; every decision about
it is made here, by pure functions a unit test calls with no HTTP client:
  1. ``Stage`` names where a sign-in or an enrolment stands; ``advance`` is the only
     way to move between stages, and refuses a move the flow does not allow.
  2. ``expiry_reason`` says whether a session is past its idle or absolute limit.
  3. ``csrf_matches`` compares a form's token with the session's in constant time.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._crypto import tokens_equal
from ._errors import UnauthenticatedError
from ._store import SessionRecord

__all__ = [
    "ENROL_STAGES",
    "FACTOR_STAGES",
    "Event",
    "SessionLimits",
    "Stage",
    "advance",
    "csrf_matches",
    "expiry_reason",
    "stage_of",
]


class Stage(enum.StrEnum):
    """Where a session stands. Stored by value (``state["stage"]``)."""

    USERNAME = "username"  # a username was given; the password is next
    PASSWORD = "password"  # noqa: S105 (a stage name): the password verified, a factor is next
    AUTHENTICATED = "authenticated"  # signed in: the login tier's decision allowed it
    INVITE = "invite"  # a live invitation code was given; a new password is next
    ENROL = "enrol"  # the invitation was accepted; factors are enrolled next


class Event(enum.StrEnum):
    """What happened to a session, moving it to another stage."""

    USERNAME_GIVEN = "username given"
    PASSWORD_VERIFIED = "password verified"  # noqa: S105 (an event name)
    LOGIN_ALLOWED = "login allowed"
    INVITATION_CODE_GIVEN = "invitation code given"
    INVITATION_ACCEPTED = "invitation accepted"


#: ``event -> (stages it may happen in, or None for any stage; the stage it leads to)``.
_MOVES: Mapping[Event, tuple[frozenset[Stage] | None, Stage]] = {
    Event.USERNAME_GIVEN: (None, Stage.USERNAME),
    Event.PASSWORD_VERIFIED: (frozenset({Stage.USERNAME}), Stage.PASSWORD),
    Event.LOGIN_ALLOWED: (frozenset({Stage.PASSWORD}), Stage.AUTHENTICATED),
    Event.INVITATION_CODE_GIVEN: (None, Stage.INVITE),
    Event.INVITATION_ACCEPTED: (frozenset({Stage.INVITE}), Stage.ENROL),
}

#: The stages at which a login factor (TOTP, WebAuthn) may be presented: the second
#: factor of a sign-in, or a step-up of a signed-in session.
FACTOR_STAGES = frozenset({Stage.PASSWORD, Stage.AUTHENTICATED})
#: The stages at which factors may be enrolled: after an invitation, or signed in.
ENROL_STAGES = frozenset({Stage.ENROL, Stage.AUTHENTICATED})


def stage_of(state: Mapping[str, Any]) -> Stage | None:
    """The stage stored in a session's state; None for none or an unknown value."""
    raw = state.get("stage")
    try:
        return Stage(raw) if isinstance(raw, str) else None
    except ValueError:
        return None  # fail closed: a value this code does not know is no stage at all


def advance(*, stage: Stage | None, event: Event) -> Stage:
    """The stage ``event`` leads to from ``stage``; refuses a move the flow forbids."""
    allowed_from, to = _MOVES[event]
    if allowed_from is not None and stage not in allowed_from:
        raise UnauthenticatedError("Start by entering your username and password.")
    return to


@dataclass(frozen=True)
class SessionLimits:
    """A tier's session limits, in seconds."""

    idle_timeout_s: int
    max_session_s: int


def expiry_reason(*, session: SessionRecord, limits: SessionLimits, now: float) -> str | None:
    """Why ``session`` is no longer live at ``now``, or None while it is.

    1. Ended sessions stay ended.
    2. Idle: no request for longer than the idle limit.
    3. Absolute: the sign-in (or, before one, the session) is older than the limit.
    """
    if session.ended_at is not None:
        return "ended"
    if now - session.last_seen > limits.idle_timeout_s:
        return "idle timeout"
    if now - min(session.auth_time or now, session.created_at) > limits.max_session_s:
        return "maximum session length"
    return None


def csrf_matches(*, presented: str | None, expected: str) -> bool:
    """A form's CSRF token equals the session's (constant time); a missing one never does."""
    return bool(presented) and tokens_equal(str(presented), expected)
