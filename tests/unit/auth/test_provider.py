"""The OIDC provider's code grant, PKCE and step-up decisions, with no HTTP client."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from pathlib import Path

import pytest

from auth import Argon2Params, KeyRing, MemoryAuditSink, Portal, PortalSettings
from auth._crypto import hash_token
from auth._errors import InvalidInputError
from auth._policy import FactorCategory, LoginDecision
from auth._provider import (
    AuthorizationRefusedError,
    AuthorizationRequest,
    BearerRefusedError,
    CodeGrant,
    StepUp,
    TokenGrant,
    TokenRefusedError,
    authenticate_client,
    check_authorization_request,
    client_step_up,
    issue_code,
    redeem_code,
    rotate_signing_key,
    userinfo,
)
from auth._store import ClientRecord, User

from .conftest import FakeClock

REDIRECT = "https://hub.example/hub/oauth_callback"
ALLOWED = LoginDecision(
    allowed=True,
    categories=frozenset({FactorCategory.KNOWLEDGE, FactorCategory.POSSESSION}),
    category_count=2,
    aal=2,
    amr=("pwd", "otp"),
    acr="urn:enclave:aal2",
    approved=True,
)
BELOW = LoginDecision(
    allowed=False,
    categories=frozenset({FactorCategory.KNOWLEDGE}),
    category_count=1,
    aal=1,
    amr=("pwd",),
    acr="urn:enclave:aal1",
    reasons=("one category is not enough",),
)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Provider:
    """A portal with one active user, one signed-in session and one registered client."""

    def __init__(self, tmp: Path, clock: FakeClock) -> None:
        key_file = tmp / "keys"
        key_file.write_text(KeyRing.generate().to_text())
        self.sink = MemoryAuditSink()
        self.clock = clock
        self.portal = Portal(
            settings=PortalSettings(
                issuer="https://portal.example",
                store_url=f"sqlite:///{tmp / 'identity.db'}",
                key_file=key_file,
                audit_target="unused",
                argon2=Argon2Params(time_cost=1, memory_cost_kib=1024, parallelism=1),
            ),
            sink=self.sink,
            clock=clock,
        )
        store = self.portal.store
        self.user: User = store.create_user(
            user_id="u-alice",
            username="alice",
            display_name="Alice",
            roles=frozenset({"researcher"}),
            status="active",
            locale="en",
            now=clock(),
        )
        self.session = hash_token("session-token")
        store.create_session(id_hash=self.session, csrf="c" * 43, client_ip=None, now=clock())
        self.secret = self.portal.register_client(
            client_id="audit-ui",
            redirect_uris=[REDIRECT],
            post_logout_redirect_uris=[],
            tier=None,
            actor="test",
        )
        client = store.get_client(client_id="audit-ui")
        assert client is not None
        self.client: ClientRecord = client

    def request(self, *, challenge: str, **kw: str) -> AuthorizationRequest:
        params = {
            "client_id": "audit-ui",
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "openid profile",
            "state": "st",
            "nonce": "n-1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **kw,
        }
        return check_authorization_request(portal=self.portal, client_ip="192.0.2.1", **params)

    def code(self, challenge: str) -> str:
        grant = CodeGrant.for_decision(
            request=self.request(challenge=challenge),
            user=self.user,
            decision=ALLOWED,
            enclave=None,
            session_hash=self.session,
            auth_time=int(self.clock()),
        )
        return issue_code(portal=self.portal, grant=grant, client_ip=None, actor="alice")

    def redeem(self, code: str, verifier: str, **kw: str) -> TokenGrant:
        args = {"grant_type": "authorization_code", "redirect_uri": REDIRECT, **kw}
        return redeem_code(
            portal=self.portal,
            client=self.client,
            code=code,
            code_verifier=verifier,
            client_ip="192.0.2.1",
            **args,
        )

    def refusal_reasons(self) -> list[str]:
        return [
            e["details"]["reason"] for e in self.sink.events if e["action"] == "oidc.token.refused"
        ]


@pytest.fixture
def op(tmp_path: Path, clock: FakeClock) -> Provider:
    return Provider(tmp_path, clock)


def test_a_code_buys_signed_tokens_that_carry_the_sign_in_decision(op: Provider):
    verifier, challenge = pkce()
    grant = op.redeem(op.code(challenge), verifier)
    claims = op.portal.keys.verify(grant.id_token)
    assert claims["aud"] == "audit-ui"
    assert claims["sub"] == "u-alice"
    assert claims["nonce"] == "n-1"
    assert claims["amr"] == ["pwd", "otp"]
    assert claims["enclave_approved"] is True
    assert grant.token_type == "Bearer"
    info = userinfo(portal=op.portal, authorization=f"Bearer {grant.access_token}")
    assert (info.preferred_username, info.acr) == ("alice", "urn:enclave:aal2")


def test_a_replayed_code_is_refused(op: Provider):
    verifier, challenge = pkce()
    code = op.code(challenge)
    op.redeem(code, verifier)
    with pytest.raises(TokenRefusedError) as e:
        op.redeem(code, verifier)
    assert e.value.error == "invalid_grant"
    assert op.refusal_reasons() == ["unknown, expired or reused code"]


def test_an_intercepted_code_without_its_pkce_verifier_is_refused(op: Provider):
    _verifier, challenge = pkce()
    other, _ = pkce()
    with pytest.raises(TokenRefusedError) as e:
        op.redeem(op.code(challenge), other)
    assert e.value.error == "invalid_grant"
    assert op.refusal_reasons() == ["PKCE verifier mismatch"]


def test_a_malformed_pkce_verifier_is_refused(op: Provider):
    verifier, challenge = pkce()
    with pytest.raises(TokenRefusedError):
        op.redeem(op.code(challenge), verifier[:20])
    assert op.refusal_reasons() == ["malformed PKCE verifier"]


def test_a_code_sent_to_another_redirect_uri_is_refused(op: Provider):
    verifier, challenge = pkce()
    with pytest.raises(TokenRefusedError):
        op.redeem(op.code(challenge), verifier, redirect_uri="https://evil.example/cb")
    assert op.refusal_reasons() == ["redirect_uri mismatch"]


def test_an_expired_code_is_refused(op: Provider):
    verifier, challenge = pkce()
    code = op.code(challenge)
    op.clock.advance(op.portal.settings.code_ttl_s + 1)
    with pytest.raises(TokenRefusedError):
        op.redeem(code, verifier)


def test_a_code_whose_sign_in_session_ended_is_refused(op: Provider):
    verifier, challenge = pkce()
    code = op.code(challenge)
    op.portal.store.end_session(id_hash=op.session, now=op.clock())
    with pytest.raises(TokenRefusedError):
        op.redeem(code, verifier)
    assert op.refusal_reasons() == ["sign-in session ended"]


def test_another_grant_type_is_refused(op: Provider):
    verifier, challenge = pkce()
    with pytest.raises(TokenRefusedError) as e:
        op.redeem(op.code(challenge), verifier, grant_type="password")
    assert e.value.error == "unsupported_grant_type"


def test_a_guessed_client_secret_is_refused_and_audited(op: Provider):
    with pytest.raises(TokenRefusedError) as e:
        authenticate_client(
            portal=op.portal,
            client_id="audit-ui",
            client_secret="guess",
            authorization=None,
            client_ip="192.0.2.1",
        )
    assert e.value.error == "invalid_client"
    assert "oidc.client.auth_failed" in op.sink.actions()


def test_the_client_authenticates_with_basic_credentials(op: Provider):
    basic = base64.b64encode(f"audit-ui:{op.secret}".encode()).decode()
    client = authenticate_client(
        portal=op.portal,
        client_id="",
        client_secret="",
        authorization=f"Basic {basic}",
        client_ip=None,
    )
    assert client.client_id == "audit-ui"


def test_an_unregistered_redirect_uri_is_refused_without_redirecting(op: Provider):
    _v, challenge = pkce()
    with pytest.raises(InvalidInputError):
        op.request(challenge=challenge, redirect_uri="https://evil.example/cb")
    assert "oidc.authorize.refused" in op.sink.actions()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "profile"}, "invalid_scope"),
        ({"state": ""}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
    ],
)
def test_an_authorization_request_without_state_or_pkce_s256_goes_back_refused(
    op: Provider, change: dict[str, str], error: str
):
    _v, challenge = pkce()
    with pytest.raises(AuthorizationRefusedError) as e:
        op.request(challenge=challenge, **change)
    assert e.value.error == error


@pytest.mark.parametrize(
    ("decision", "kinds", "prompt", "expected"),
    [
        (ALLOWED, frozenset(), "", StepUp.NOT_NEEDED),
        (BELOW, frozenset({"password", "totp"}), "", StepUp.STEP_UP),
        (BELOW, frozenset({"password", "webauthn"}), "login", StepUp.STEP_UP),
        (BELOW, frozenset({"password", "totp"}), "none", StepUp.REFUSE),
        (BELOW, frozenset({"password"}), "", StepUp.REFUSE),
    ],
)
def test_a_sign_in_below_the_client_tier_steps_up_or_is_refused(
    decision: LoginDecision, kinds: frozenset[str], prompt: str, expected: StepUp
):
    assert client_step_up(decision=decision, enrolled_kinds=kinds, prompt=prompt) is expected


def test_an_access_token_outliving_its_sign_in_session_is_refused(op: Provider):
    verifier, challenge = pkce()
    grant = op.redeem(op.code(challenge), verifier)
    op.portal.store.end_session(id_hash=op.session, now=op.clock())
    with pytest.raises(BearerRefusedError) as e:
        userinfo(portal=op.portal, authorization=f"Bearer {grant.access_token}")
    assert e.value.error == "invalid_token"


def test_a_missing_bearer_token_is_refused_without_an_error_code(op: Provider):
    with pytest.raises(BearerRefusedError) as e:
        userinfo(portal=op.portal, authorization=None)
    assert e.value.error == ""


def test_a_rotated_key_signs_and_the_retired_one_still_verifies(op: Provider):
    verifier, challenge = pkce()
    old = op.redeem(op.code(challenge), verifier).id_token
    rotated = rotate_signing_key(portal=op.portal, actor="admin-api")
    verifier, challenge = pkce()
    new = op.redeem(op.code(challenge), verifier).id_token
    assert op.portal.keys.verify(old)["sub"] == "u-alice"
    kids = [k["kid"] for k in op.portal.keys.jwks()["keys"]]
    assert rotated.kid in kids
    assert len(kids) == 2
    header = json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))
    assert header["kid"] == rotated.kid
    assert "admin.signing_key.rotated" in op.sink.actions()
