"""Password rules: length and a maintained common-password list, no composition rules."""

from __future__ import annotations

import pytest

from auth._errors import FactorFailedError, InvalidInputError, ThrottledError
from auth._factors import Factors, check_password_policy, is_common_password
from auth._policy import load_catalog
from auth._store import IdentityStore

from .conftest import FakeClock


def test_common_list_is_loaded() -> None:
    assert is_common_password("password")
    assert is_common_password("Qwertyuiop")
    assert not is_common_password("ochre-lantern-gravel-41")


@pytest.mark.parametrize(
    ("pw", "msg"),
    [
        ("short", "at least 12"),
        ("password1234", "common passwords"),
        ("x" * 1025, "at most"),
        ("my-alice-password-x", "username"),
    ],
)
def test_policy_refusals(pw: str, msg: str) -> None:
    with pytest.raises(InvalidInputError, match=msg):
        check_password_policy(password=pw, min_length=12, username="alice")


def test_no_composition_rules() -> None:
    check_password_policy(password="ochre lantern gravel", min_length=12, username="alice")


def test_unknown_and_known_users_get_the_same_answers(
    factors: Factors, store: IdentityStore, clock: FakeClock
) -> None:
    """Same status, words and Retry-After, attempt after attempt, waiting or not."""
    tier = load_catalog().get("nbdc-standard")
    user = store.create_user(
        user_id="u1",
        username="alice",
        display_name="Alice",
        roles=frozenset(),
        status="active",
        locale="en",
        now=clock(),
    )
    factors.set_password(user=user, password="ochre lantern gravel", tier=tier)
    waits = [0, 0, 0, 0, 0, 0, 31, 0, 61, 10, 200, 0]
    answers: dict[str, list[str]] = {"alice": [], "mallory": []}
    start = clock.now
    for name in answers:
        clock.now = start
        for w in waits:
            clock.advance(w)
            try:
                factors.verify_password(
                    username=name, password="wrong wrong wrong", tier=tier, client_ip=None
                )
            except ThrottledError as e:
                answers[name].append(f"429 {e.message} {e.retry_after_s}")
            except FactorFailedError as e:
                answers[name].append(f"401 {e.message}")
    assert answers["alice"] == answers["mallory"]
    assert answers["alice"][0] == "401 The username or password is not correct."
    assert answers["alice"][5].startswith("429")
    assert answers["alice"][6].startswith("401")  # after the 30 s back-off
    assert answers["alice"][7].startswith(
        "429 Too many failed attempts; wait before trying again. 60"
    )
