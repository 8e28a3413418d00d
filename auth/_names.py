"""Usernames: the one rule for what a username is, and the one normalisation.

Every path that takes a username (login, throttling, invitation, enrolment, the admin
API, the CLI, enclave membership, the identity store's lookups) passes it through
``canonical_username`` so that names differing only by case are one name everywhere.
"""

from __future__ import annotations

import re

from ._errors import InvalidInputError

__all__ = [
    "MALFORMED_USERNAME_ACTOR",
    "USERNAME_RE",
    "canonical_username",
    "require_username",
]

#: What a username may look like (before normalisation): ASCII letters, digits and
#: ``. _ @ + -``, starting with a letter or digit, 1-128 characters.
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
#: The audit actor for a login attempt whose username breaks that rule: the raw value
#: (control characters, blank, oversize) is never written to the log.
MALFORMED_USERNAME_ACTOR = "(malformed username)"


def canonical_username(raw: str) -> str | None:
    """The canonical form of ``raw`` (surrounding blanks removed, lower-cased), or None
    when it is not a username. The allowed characters are ASCII, so lower-casing is
    the whole of RFC 8265's case mapping for them; ``R.Tanaka`` and ``r.tanaka`` are
    one name."""
    name = raw.strip()
    if USERNAME_RE.fullmatch(name) is None:
        return None
    return name.lower()


def require_username(raw: str) -> str:
    """``canonical_username`` for officer input: a malformed name is refused."""
    name = canonical_username(raw)
    if name is None:
        raise InvalidInputError(
            "The username must be 1-128 characters: letters, digits and . _ @ + -."
        )
    return name
