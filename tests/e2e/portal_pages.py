"""The portal's invitation and login pages as a person goes through them in Chromium.

Shared by the browser tests that enrol someone and sign them in:
``submit_invitation`` (the code and a password, up to the TOTP secret shown),
``redeem_invitation`` (the same, then TOTP at the current time step, finished),
``password_step`` and ``sign_in`` (password, then TOTP at the next step).
"""

from __future__ import annotations

import time
from typing import Any

import pyotp

__all__ = [
    "password_step",
    "redeem_invitation",
    "sign_in",
    "submit_invitation",
    "totp_at",
]


def totp_at(secret: str, *, steps_ahead: int) -> str:
    """The TOTP code ``steps_ahead`` 30-second steps from now (a used step is refused)."""
    return str(pyotp.TOTP(secret).at(int(time.time()) + 30 * steps_ahead))


def submit_invitation(page: Any, *, portal: str, code: str, password: str) -> str:
    """At ``portal``/invite: the invitation code, then ``password`` twice; the TOTP
    secret the page then shows."""
    page.goto(portal + "/invite")
    page.fill("#code", code)
    page.click("#submit")
    page.fill("#password", password)
    page.fill("#password2", password)
    page.click("#submit")
    page.wait_for_selector("#totp-secret")
    return str(page.inner_text("#totp-secret"))


def redeem_invitation(page: Any, *, portal: str, code: str, password: str) -> str:
    """:func:`submit_invitation`, then TOTP enrolled with this time step's code and the
    enrolment finished (the portal's login page); the TOTP secret."""
    secret = submit_invitation(page, portal=portal, code=code, password=password)
    page.fill("#code", totp_at(secret, steps_ahead=0))
    page.click("#totp-submit")
    page.wait_for_selector("#done")
    page.click("#done")
    page.wait_for_url("**/login")
    return secret


def password_step(page: Any, *, user: str, password: str) -> None:
    """On the portal's login page: the username, then the password; the factor page."""
    page.fill("#username", user)
    page.click("#submit")
    page.fill("#password", password)
    page.click("#submit")
    page.wait_for_url("**/login/factor")


def sign_in(page: Any, *, portal: str, user: str, password: str, secret: str) -> None:
    """Sent to the portal's login page by a client of it: the password, then TOTP with
    the next time step's code (the enrolment used this one; a used step is refused)."""
    page.wait_for_url(portal + "/login**")
    password_step(page, user=user, password=password)
    page.fill("#code", totp_at(secret, steps_ahead=1))
    page.click("#totp-submit")
