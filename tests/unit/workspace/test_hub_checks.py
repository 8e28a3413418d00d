"""The hub's checks on the portal's ID token (step 3) and on entry (steps 4-5).

Tokens are signed with PyJWT, independently of joserfc that verifies them."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from controller.workspace import SpecError
from controller.workspace.hub import (
    EnclaveAuthenticator,
    TokenRefused,
    decide_entry,
    verify_id_token,
)
from policies import CatalogError
from tests.harness.aio import run_coroutine

ISSUER, CLIENT = "https://portal.example", "hub-gut-2026"
NOW = 1_800_000_000


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PORTAL_KEY, ATTACKER_KEY = _key(), _key()


def jwks(key: rsa.RSAPrivateKey = PORTAL_KEY, kid: str = "k1") -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**jwk, "kid": kid, "alg": "RS256", "use": "sig"}]}


def token(key: rsa.RSAPrivateKey = PORTAL_KEY, kid: str = "k1", **over: Any) -> str:
    claims = {
        "iss": ISSUER,
        "aud": CLIENT,
        "iat": NOW,
        "exp": NOW + 300,
        "preferred_username": "r.tanaka",
        "enclaves": ["gut-2026"],
        "enclave_factors": ["knowledge", "possession"],
        "amr": ["pwd", "otp", "mfa"],
        "acr": "urn:enclave:aal2",
        **over,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def verify(tok: str, keys: dict[str, Any] | None = None, now: float = NOW) -> dict[str, Any]:
    return verify_id_token(tok, jwks=keys or jwks(), issuer=ISSUER, client_id=CLIENT, now=now)


def test_portal_token_verifies() -> None:
    assert verify(token())["preferred_username"] == "r.tanaka"


@pytest.mark.parametrize(
    ("tok", "reason"),
    [
        (token(ATTACKER_KEY), "signature does not verify"),
        (token(aud="hub-other-enclave"), "not valid for this hub"),
        (token(iss="https://evil.example"), "not valid for this hub"),
        (token(exp=NOW - 3600), "not valid for this hub"),
        (token(kid="k-unknown"), "unknown signing key"),
        ("not.a.jwt", "not a compact JWS"),
        (None, "no usable ID token"),
    ],
    ids=[
        "forged_with_another_key",
        "token_for_another_client",
        "token_from_another_issuer",
        "expired_token",
        "unknown_kid",
        "garbage",
        "missing",
    ],
)
def test_attacker_token_is_refused(tok: Any, reason: str) -> None:
    with pytest.raises(TokenRefused, match=reason):
        verify(tok)


def test_unsigned_alg_none_token_is_refused() -> None:
    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    forged = (
        b64({"alg": "none", "kid": "k1"})
        + "."
        + b64(jwt.decode(token(), options={"verify_signature": False}))
        + "."
    )
    with pytest.raises(TokenRefused):
        verify(forged)


def test_token_without_expiry_is_refused() -> None:
    claims = jwt.decode(token(), options={"verify_signature": False})
    del claims["exp"]
    tok = jwt.encode(claims, PORTAL_KEY, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(TokenRefused, match="not valid for this hub"):
        verify(tok, now=time.time())


def claims(**over: Any) -> dict[str, Any]:
    return {**verify(token()), **over}


def test_member_with_the_tiers_factors_is_admitted() -> None:
    d = decide_entry(
        claims=claims(), enclave="gut-2026", members=["r.tanaka"], tier="nbdc-standard"
    )
    assert d.allowed
    assert d.login is not None
    assert d.login.aal == 2


def test_member_of_another_enclave_is_refused() -> None:
    d = decide_entry(
        claims=claims(enclaves=["other-2026"]),
        enclave="gut-2026",
        members=["r.tanaka"],
        tier="nbdc-standard",
    )
    assert (d.allowed, d.stage) == (False, "membership")


def test_portal_membership_without_the_spec_is_refused() -> None:
    # the portal's registration lags the Enclave spec (a member just removed): refused
    d = decide_entry(claims=claims(), enclave="gut-2026", members=["k.sato"], tier="nbdc-standard")
    assert (d.allowed, d.stage) == (False, "membership")


def test_password_and_totp_do_not_open_a_strong_tier() -> None:
    d = decide_entry(claims=claims(), enclave="gut-2026", members=["r.tanaka"], tier="tommo-strong")
    assert (d.allowed, d.stage) == (False, "factors")
    assert any("biometric" in r for r in d.reasons)


def test_single_factor_token_is_refused_even_at_the_standard_tier() -> None:
    d = decide_entry(
        claims=claims(enclave_factors=["knowledge"], amr=["pwd"], acr="urn:enclave:aal1"),
        enclave="gut-2026",
        members=["r.tanaka"],
        tier="nbdc-standard",
    )
    assert (d.allowed, d.stage) == (False, "factors")


def test_token_naming_no_user_is_refused() -> None:
    d = decide_entry(
        claims=claims(preferred_username=""),
        enclave="gut-2026",
        members=["r.tanaka"],
        tier="nbdc-standard",
    )
    assert (d.allowed, d.stage) == (False, "token")


def _authenticator(**config: Any) -> EnclaveAuthenticator:
    return EnclaveAuthenticator(
        enclave="gut-2026", members=["r.tanaka"], tier="nbdc-standard", **config
    )


@pytest.mark.parametrize(
    "config",
    [{"allow_all": True}, {"admin_users": {"intruder"}}, {"allowed_users": {"intruder"}}],
    ids=["allow_all", "admin_users", "allowed_users"],
)
def test_operator_shortcuts_never_admit_a_non_member(config: dict[str, Any]) -> None:
    auth = _authenticator(**config)
    model = {"name": "intruder", "admin": True, "auth_state": {}}
    assert run_coroutine(auth.check_allowed("intruder", model)) is False
    assert run_coroutine(auth.check_allowed("r.tanaka", None)) is False
    assert run_coroutine(auth.update_auth_model(dict(model)))["admin"] is False


class StoredUser:
    """A hub user as refresh_user sees it: a name and the encrypted auth state."""

    def __init__(self, name: str, id_token: str) -> None:
        self.name = name
        self._state = {"token_response": {"id_token": id_token}}

    async def get_auth_state(self) -> dict[str, Any]:
        return self._state


def live(**over: Any) -> str:
    """A token issued now (refresh_user checks against the wall clock)."""
    now = int(time.time())
    return token(**{"iat": now, "exp": now + 300, **over})


@pytest.mark.parametrize(
    ("username", "over", "expected"),
    [
        ("r.tanaka", {}, True),
        ("r.tanaka", {"iat": -7200, "exp": -3600}, False),
        ("r.tanaka", {"enclaves": []}, False),
        ("k.sato", {}, False),
    ],
    ids=["still_valid", "expired_token", "removed_from_the_enclave", "token_of_someone_else"],
)
def test_refresh_rechecks_the_stored_token(
    username: str, over: dict[str, Any], expected: bool
) -> None:
    # Times are offsets from when the test runs, not from collection: a whole suite
    # outlasts the token's five minutes.
    now = int(time.time())
    claims = {k: now + v if k in ("iat", "exp") else v for k, v in over.items()}
    user = StoredUser(username, live(**claims))
    auth = _authenticator(issuer=ISSUER, client_id=CLIENT)
    auth._jwks = jwks()
    assert run_coroutine(auth.refresh_user(user)) is expected


def test_hub_without_a_readable_audit_token_does_not_start(tmp_path: Path) -> None:
    token = tmp_path / "audit_token"
    token.write_text("eat_x_y")
    token.chmod(0o644)
    auth = _authenticator(
        issuer=ISSUER,
        jwks_url=ISSUER + "/oidc/jwks",
        audit_url="http://127.0.0.1:9",
        audit_token_file=str(token),
        audit_spool=str(tmp_path / "spool.db"),
    )
    with pytest.raises(SpecError, match="readable by others"):
        auth.check_allow_config()
    token.unlink()
    with pytest.raises(SpecError, match="cannot be read"):
        auth.check_allow_config()


def test_hub_with_no_members_does_not_start() -> None:
    auth = _authenticator(issuer=ISSUER, jwks_url="x", audit_url="x", audit_token_file="x")
    auth.members = []
    with pytest.raises(SpecError, match="nobody could enter"):
        auth.check_allow_config()


#: A site's overlay that tightens nbdc-standard: a phishing-resistant factor is required.
TIGHTENED = {"tiers": {"nbdc-standard": {"login": {"require_phishing_resistant": True}}}}


def test_a_session_meeting_only_the_loose_builtin_tier_does_not_enter_a_tightened_enclave(
    tmp_path: Path,
) -> None:
    """Password and TOTP meet the built-in nbdc-standard; the site's overlay demands a
    phishing-resistant factor, and the hub's own decision (sign-in and refresh) must
    apply it, not the built-in catalog."""
    overlay = tmp_path / "tier-overlay.yaml"
    overlay.write_text(yaml.safe_dump(TIGHTENED))
    loose = decide_entry(
        claims=claims(), enclave="gut-2026", members=["r.tanaka"], tier="nbdc-standard"
    )
    assert loose.allowed  # what the built-in tier alone lets in
    d = decide_entry(
        claims=claims(),
        enclave="gut-2026",
        members=["r.tanaka"],
        tier="nbdc-standard",
        tier_overlay=str(overlay),
    )
    assert (d.allowed, d.stage) == (False, "factors")
    assert any("phishing" in r for r in d.reasons), d.reasons
    # the authenticator a hub runs: its stored session is refused on refresh
    auth = _authenticator(issuer=ISSUER, client_id=CLIENT, tier_overlay=str(overlay))
    auth._jwks = jwks()
    assert run_coroutine(auth.refresh_user(StoredUser("r.tanaka", live()))) is False


def test_a_hub_whose_tier_overlay_cannot_be_read_does_not_start(tmp_path: Path) -> None:
    auth = _authenticator(
        issuer=ISSUER,
        jwks_url=ISSUER + "/oidc/jwks",
        audit_url="http://127.0.0.1:9",
        audit_token_file=str(tmp_path / "audit_token"),
        tier_overlay=str(tmp_path / "missing.yaml"),
    )
    with pytest.raises(CatalogError):
        auth.check_allow_config()
