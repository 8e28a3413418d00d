"""The login stage machine, session expiry and CSRF, with no HTTP client."""

from __future__ import annotations

import pytest

from auth._errors import UnauthenticatedError
from auth._session import (
    ENROL_STAGES,
    FACTOR_STAGES,
    Event,
    SessionLimits,
    Stage,
    advance,
    csrf_matches,
    expiry_reason,
    stage_of,
)
from auth._store import SessionRecord

LIMITS = SessionLimits(idle_timeout_s=600, max_session_s=3600)
T0 = 1_800_000_000.0


def session(**kw: object) -> SessionRecord:
    base: dict[str, object] = {
        "id_hash": "h" * 64,
        "user_id": "u1",
        "state": {},
        "csrf": "c" * 43,
        "client_ip": "192.0.2.1",
        "created_at": T0,
        "last_seen": T0,
        "auth_time": None,
        "ended_at": None,
    }
    return SessionRecord(**{**base, **kw})  # type: ignore[arg-type]


def test_the_sign_in_walks_username_password_then_authenticated():
    stage = advance(stage=None, event=Event.USERNAME_GIVEN)
    stage = advance(stage=stage, event=Event.PASSWORD_VERIFIED)
    assert advance(stage=stage, event=Event.LOGIN_ALLOWED) is Stage.AUTHENTICATED


@pytest.mark.parametrize("stage", [None, Stage.USERNAME, Stage.INVITE, Stage.ENROL])
def test_skipping_the_password_never_reaches_authenticated(stage):
    with pytest.raises(UnauthenticatedError):
        advance(stage=stage, event=Event.LOGIN_ALLOWED)


@pytest.mark.parametrize("stage", [None, Stage.PASSWORD, Stage.AUTHENTICATED, Stage.ENROL])
def test_a_password_without_a_username_step_is_refused(stage):
    with pytest.raises(UnauthenticatedError):
        advance(stage=stage, event=Event.PASSWORD_VERIFIED)


@pytest.mark.parametrize("stage", [None, Stage.USERNAME, Stage.PASSWORD, Stage.AUTHENTICATED])
def test_accepting_an_invitation_without_its_code_is_refused(stage):
    with pytest.raises(UnauthenticatedError):
        advance(stage=stage, event=Event.INVITATION_ACCEPTED)


@pytest.mark.parametrize("stage", [None, *Stage])
def test_a_new_username_or_invitation_restarts_from_any_stage(stage):
    assert advance(stage=stage, event=Event.USERNAME_GIVEN) is Stage.USERNAME
    assert advance(stage=stage, event=Event.INVITATION_CODE_GIVEN) is Stage.INVITE


def test_a_factor_is_presented_after_the_password_and_enrolled_after_an_invitation():
    assert {Stage.PASSWORD, Stage.AUTHENTICATED} == FACTOR_STAGES
    assert {Stage.ENROL, Stage.AUTHENTICATED} == ENROL_STAGES


@pytest.mark.parametrize("raw", [None, "", "Authenticated", "admin", 1, ["authenticated"]])
def test_a_forged_or_unknown_stage_value_is_no_stage(raw):
    assert stage_of({"stage": raw}) is None


def test_a_stored_stage_reads_back_as_its_enum():
    assert stage_of({"stage": "authenticated"}) is Stage.AUTHENTICATED


def test_a_session_idle_past_the_limit_expires():
    s = session(last_seen=T0)
    assert expiry_reason(session=s, limits=LIMITS, now=T0 + 600) is None
    assert expiry_reason(session=s, limits=LIMITS, now=T0 + 601) == "idle timeout"


def test_a_session_kept_busy_still_expires_at_its_absolute_limit():
    s = session(created_at=T0, auth_time=T0 + 10, last_seen=T0 + 3700)
    assert expiry_reason(session=s, limits=LIMITS, now=T0 + 3700) == "maximum session length"
    assert expiry_reason(session=s, limits=LIMITS, now=T0 + 3600) is None


def test_an_ended_session_stays_ended():
    assert expiry_reason(session=session(ended_at=T0), limits=LIMITS, now=T0) == "ended"


@pytest.mark.parametrize("presented", [None, "", "c" * 42, "d" * 43, "c" * 44])
def test_a_cross_site_form_without_the_session_csrf_token_is_refused(presented):
    assert not csrf_matches(presented=presented, expected="c" * 43)


def test_the_session_csrf_token_matches():
    assert csrf_matches(presented="c" * 43, expected="c" * 43)
