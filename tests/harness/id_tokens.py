"""ID tokens checked by an implementation independent of the portal's.

The portal signs with joserfc (and the audit UI verifies with it); the tests verify
with PyJWT, so that a shared misreading of RFC 7515/7517 in one library cannot make
both sides agree on a wrong token."""

from __future__ import annotations

from typing import Any

import jwt


def decode(
    token: str,
    jwks: dict[str, Any],
    *,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of ``token`` after PyJWT checked its RS256 signature with the JWKS key
    named by its ``kid`` (and ``aud``/``iss`` when given). With ``now`` (a test clock),
    ``exp`` and ``iat`` are required and checked against it instead of the wall clock."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid].key
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer,
        options={"verify_aud": audience is not None, "verify_exp": False, "verify_iat": False},
    )
    if now is not None:
        assert claims["iat"] <= now < claims["exp"], (claims["iat"], now, claims["exp"])
    return claims
