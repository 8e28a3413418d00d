"""The audit UI's OpenID Connect relying party: ID-token checks and the officer decision.

Tokens are signed here with a fresh RSA key in the same compact-JWS form the portal
uses (RS256, ``kid`` in the header), so every check of ``verify_id_token`` is driven
by one changed field."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from audit.service._oidc import (
    DEFAULT_MIN_TIER,
    OidcConfig,
    OidcError,
    OidcLogin,
    officer_decision,
    pkce_challenge,
    verify_id_token,
)

ISSUER = "https://portal.example"
CLIENT = "audit-ui"
NONCE = "n-" + "x" * 40


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    nums = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
        "n": _b64(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
        "e": _b64(nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")),
    }


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _sign(key: rsa.RSAPrivateKey, claims: dict[str, Any], **header: Any) -> str:
    h = {"alg": "RS256", "kid": "k1", "typ": "JWT", **header}
    signing_input = _b64(json.dumps(h).encode()) + "." + _b64(json.dumps(claims).encode())
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64(sig)


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    c: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "u1",
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
        "preferred_username": "k.sato@tohoku.example",
        "roles": ["officer", "pi"],
        "amr": ["pwd", "otp", "mfa"],
        "acr": "urn:enclave:aal2",
        "enclave_factors": ["knowledge", "possession"],
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def _verify(key: rsa.RSAPrivateKey, token: str) -> dict[str, Any]:
    return verify_id_token(
        token,
        jwks={"keys": [_jwk(key, "k1")]},
        issuer=ISSUER,
        client_id=CLIENT,
        nonce=NONCE,
        now=time.time(),
    )


def test_a_good_token_verifies(key: rsa.RSAPrivateKey) -> None:
    claims = _verify(key, _sign(key, _claims()))
    assert claims["preferred_username"] == "k.sato@tohoku.example"


@dataclass(frozen=True)
class _FromNow:
    """A time claim relative to when the test runs, not to when pytest collected it (a
    whole suite takes longer than the 10 minutes "in the future" allows)."""

    seconds: int

    def resolve(self) -> int:
        return int(time.time()) + self.seconds


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"iss": "https://evil.example"}, "another issuer"),
        ({"aud": "other-tool"}, "another client"),
        ({"aud": ["other-tool", CLIENT]}, "azp is not this client"),
        ({"exp": _FromNow(-120)}, "expired"),
        ({"iat": _FromNow(600)}, "in the future"),
        ({"nonce": "n-forged"}, "nonce does not match"),
        ({"nonce": None}, "nonce does not match"),
        ({"exp": None}, "expired"),
    ],
)
def test_each_claim_check_refuses(
    key: rsa.RSAPrivateKey, over: dict[str, Any], reason: str
) -> None:
    over = {k: v.resolve() if isinstance(v, _FromNow) else v for k, v in over.items()}
    with pytest.raises(OidcError, match=reason):
        _verify(key, _sign(key, _claims(**over)))


def test_several_audiences_with_azp_verify(key: rsa.RSAPrivateKey) -> None:
    assert _verify(key, _sign(key, _claims(aud=["other-tool", CLIENT], azp=CLIENT)))


def test_signature_algorithm_and_key_checks(key: rsa.RSAPrivateKey) -> None:
    token = _sign(key, _claims())
    head, body, sig = token.split(".")
    forged_body = _b64(json.dumps(_claims(preferred_username="admin")).encode())
    with pytest.raises(OidcError, match="signature does not verify"):
        _verify(key, f"{head}.{forged_body}.{sig}")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(OidcError, match="signature does not verify"):
        _verify(key, _sign(other, _claims()))
    with pytest.raises(OidcError, match="unknown signing key"):
        _verify(key, _sign(key, _claims(), kid="k9"))
    none_alg = _b64(json.dumps({"alg": "none", "kid": "k1"}).encode()) + "." + body + "."
    with pytest.raises(OidcError, match="not RS256"):
        _verify(key, none_alg)
    hs = _b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    with pytest.raises(OidcError, match="not RS256"):
        _verify(key, f"{hs}.{body}.{sig}")
    for bad in ("", "a.b", "a.b.c.d", "!!.??.**"):
        with pytest.raises(OidcError):
            _verify(key, bad)


def test_officer_role_and_tier_decide() -> None:
    ok = officer_decision(_claims(), required_role="officer", min_tier="nbdc-standard")
    assert ok.allowed
    assert ok.username == "k.sato@tohoku.example"
    assert ok.aal == 2
    researcher = officer_decision(
        _claims(roles=["researcher"]), required_role="officer", min_tier="nbdc-standard"
    )
    assert not researcher.allowed
    assert any("does not hold the officer role" in r for r in researcher.reasons)
    no_roles = officer_decision(
        _claims(roles=None), required_role="officer", min_tier="nbdc-standard"
    )
    assert not no_roles.allowed
    assert "no roles claim" in no_roles.reasons[0]
    # password + TOTP is not phishing-resistant: the default tier (nbdc-high) refuses it
    high = officer_decision(_claims(), required_role="officer", min_tier=DEFAULT_MIN_TIER)
    assert DEFAULT_MIN_TIER == "nbdc-high"
    assert not high.allowed
    assert all("audit UI minimum tier nbdc-high" in r for r in high.reasons)
    key_login = officer_decision(
        _claims(amr=["pwd", "hwk", "user", "mfa"], acr="urn:enclave:aal3", enclave_approved=True),
        required_role="officer",
        min_tier=DEFAULT_MIN_TIER,
    )
    assert key_login.allowed, key_login.reasons
    assert key_login.aal == 3
    # Issue #11 item 1: a key without UV, not approved, with an overstated acr.
    phished = officer_decision(
        _claims(amr=["pwd", "hwk", "mfa"], acr="urn:enclave:aal3", enclave_approved=False),
        required_role="officer",
        min_tier=DEFAULT_MIN_TIER,
    )
    assert not phished.allowed
    text = " ".join(phished.reasons)
    for why in ("claims AAL3", "did not verify the user", "officer approved"):
        assert why in text, text
    # A missing or non-boolean enclave_approved counts as not approved.
    for approved in (None, "true", 1):
        loose = officer_decision(
            _claims(
                amr=["pwd", "hwk", "user", "mfa"], acr="urn:enclave:aal3", enclave_approved=approved
            ),
            required_role="officer",
            min_tier=DEFAULT_MIN_TIER,
        )
        assert not loose.allowed
    password_only = officer_decision(
        _claims(amr=["pwd"], acr="urn:enclave:aal1", enclave_factors=["knowledge"]),
        required_role="officer",
        min_tier="nbdc-standard",
    )
    assert not password_only.allowed


@pytest.mark.parametrize(
    "over",
    [
        {"preferred_username": None},
        {"preferred_username": "officer:bootstrap"},
        {"preferred_username": ""},
        {"amr": None},
        {"enclave_factors": "knowledge"},
        {"acr": 2},
        {"roles": "officer"},
    ],
)
def test_missing_or_malformed_claims_refuse(over: dict[str, Any]) -> None:
    assert not officer_decision(
        _claims(**over), required_role="officer", min_tier="nbdc-standard"
    ).allowed


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def _login(tmp_path: Path) -> OidcLogin:
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    secret.chmod(0o600)
    login = OidcLogin(
        config=OidcConfig(
            issuer=ISSUER,
            client_id=CLIENT,
            client_secret_file=secret,
            redirect_uri="https://audit.example/ui/oidc/callback",
        )
    )
    login._discovery = {  # no portal needed to build the authorization URL
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/oidc/authorize",
    }
    return login


def test_begin_makes_fresh_state_nonce_and_pkce(tmp_path: Path) -> None:
    from urllib.parse import parse_qs, urlsplit

    login = _login(tmp_path)
    c1, url1 = login.begin()
    c2, url2 = login.begin()
    q1 = {k: v[0] for k, v in parse_qs(urlsplit(url1).query).items()}
    q2 = {k: v[0] for k, v in parse_qs(urlsplit(url2).query).items()}
    assert c1 != c2
    assert q1["code_challenge_method"] == "S256"
    assert q1["response_type"] == "code"
    assert q1["redirect_uri"] == "https://audit.example/ui/oidc/callback"
    for k in ("state", "nonce", "code_challenge"):
        assert q1[k] != q2[k]
        assert len(q1[k]) >= 43
    assert c1 not in url1  # the cookie value never travels in the URL


def test_finish_refuses_unknown_reused_and_mismatched_sign_ins(tmp_path: Path) -> None:
    login = _login(tmp_path)
    with pytest.raises(OidcError, match="not started here"):
        login.finish(cookie=None, state="s", code="c", error="")
    cookie, _url = login.begin()
    with pytest.raises(OidcError, match="state does not match"):
        login.finish(cookie=cookie, state="forged", code="c", error="")
    # single use: the pending sign-in is gone even after a failure
    with pytest.raises(OidcError, match="not started here"):
        login.finish(cookie=cookie, state="forged", code="c", error="")
    cookie, _url = login.begin()
    with pytest.raises(OidcError, match="the portal refused the sign-in: access_denied"):
        login.finish(cookie=cookie, state="", code="", error="access_denied")


def test_secret_file_must_be_private_and_non_empty(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_text("")
    f.chmod(0o600)
    assert "is empty" in (OidcConfig.check_secret_file(f) or "")
    f.write_text("abc")
    f.chmod(0o644)
    assert "readable by group or others" in (OidcConfig.check_secret_file(f) or "")
    assert "cannot read" in (OidcConfig.check_secret_file(tmp_path / "none") or "")
    with pytest.raises(ValueError, match="issuer"):
        OidcConfig(
            issuer="portal", client_id=CLIENT, client_secret_file=f, redirect_uri="https://a/"
        )


def test_ten_thousand_and_one_starts_do_not_flush_an_officers_pending_sign_in(
    tmp_path: Path,
) -> None:
    """Issue #12, item 6: anyone may start sign-ins; an officer's pending one lives in
    the officer's own browser (a sealed cookie), so no number of starts evicts it."""
    login = _login(tmp_path)
    officer_cookie, url = login.begin()
    for _ in range(10_001):
        login.begin()
    from urllib.parse import parse_qs, urlsplit

    state = parse_qs(urlsplit(url).query)["state"][0]
    with pytest.raises(OidcError, match="the portal refused the sign-in: access_denied"):
        login.finish(cookie=officer_cookie, state=state, code="", error="access_denied")


def test_a_forged_or_altered_pending_cookie_is_not_a_sign_in(tmp_path: Path) -> None:
    login = _login(tmp_path)
    cookie, _url = login.begin()
    altered = cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB")
    for forged in (altered, "x" * 40, "", _login(tmp_path).begin()[0]):
        with pytest.raises(OidcError, match="not started here"):
            login.finish(cookie=forged, state="s", code="c", error="")
