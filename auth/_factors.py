"""Authentication factors, one function per ceremony step, with throttling.

Knowledge: password (argon2id, >= the tier's minimum length, not on the common
list). Possession: TOTP (RFC 6238, +-1 step, each step accepted at most once per
credential across every process sharing the store) and WebAuthn (py_webauthn).
Biometric: WebAuthn with UV on an attested, allow-listed AAGUID (TIERS.md).

Throttling (NIST SP 800-63B-4 section 3.2.2), applied by every ``verify_*``:
  1. refuse at once if the authenticator is disabled (after the tier's
     ``max_consecutive_failures``) or inside its back-off window;
  2. refuse at once if the client IP has too many recent failures;
  3. verify; on failure count it (authenticator + IP), start or grow the back-off
     from the ``backoff_after_failures``-th failure, disable at the limit; audit;
  4. on success reset the authenticator's counter; audit with the factor category.
Unknown usernames get the same answers as known ones (a dummy argon2id check and a
failure counter keyed on the name).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyotp
import segno
from cryptography import x509

from ._audit import Auditor
from ._crypto import KeyRing, PasswordHasher, hash_token
from ._errors import FactorFailedError, InvalidInputError, ThrottledError
from ._names import MALFORMED_USERNAME_ACTOR, canonical_username
from ._policy import FactorKind, Tier, VerifiedFactor
from ._store import Credential, IdentityStore, User
from ._webauthn import FactorResult, WebAuthnFactors, WebAuthnSettings

__all__ = [
    "MALFORMED_USERNAME_ACTOR",
    "UNKNOWN_CLIENT",
    "FactorResult",
    "Factors",
    "TotpEnrolment",
    "WebAuthnSettings",
    "check_password_policy",
    "is_common_password",
    "totp_at",
]


Clock = Callable[[], float]
MAX_PASSWORD = 1024
_FIDO_AAGUID_OID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
_CATEGORY = {"password": "knowledge", "totp": "possession", "webauthn": "possession"}


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords ranked by zxcvbn (MIT), lower-cased.

    The list is the ``passwords`` frequency list that ``zxcvbn`` ships (built from leaked
    password corpora); NIST SP 800-63B-4 asks for exactly this kind of block-list of
    commonly used, expected or compromised values. Loaded once, on first use.
    """
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # a few MB: imported on first use

    return frozenset(word.strip().lower() for word in FREQUENCY_LISTS["passwords"] if word)


def is_common_password(password: str) -> bool:
    return password.strip().lower() in _common_passwords()


def check_password_policy(*, password: str, min_length: int, username: str) -> None:
    """NIST SP 800-63B-4: length and a block-list only, no composition rules."""
    if len(password) < min_length:
        raise InvalidInputError(f"The password must be at least {min_length} characters long.")
    if len(password) > MAX_PASSWORD:
        raise InvalidInputError(f"The password must be at most {MAX_PASSWORD} characters long.")
    if is_common_password(password):
        raise InvalidInputError("That password is on a list of common passwords; choose another.")
    if username and username.lower() in password.lower():
        raise InvalidInputError("The password must not contain your username.")


def totp_at(*, secret_b32: str, for_time: int, digits: int = 6, digest: str = "sha1") -> str:
    """The TOTP code at ``for_time`` (RFC 6238; T0 = 0, X = 30 s)."""
    return str(
        pyotp.TOTP(secret_b32, digits=digits, digest=getattr(hashlib, digest), interval=30).at(
            for_time
        )
    )


@dataclass(frozen=True)
class TotpEnrolment:
    """A TOTP secret being enrolled: sealed for the session, shown to the user once."""

    sealed_secret_b64: str
    secret_b32: str
    provisioning_uri: str
    qr_svg: str


UNKNOWN_CLIENT = "unknown"
"""The per-client-IP bucket of requests whose address is unknown (a peer that is not an
IP address, e.g. a Unix socket without a trusted proxy's header): they share one
bucket, limited like any address, rather than escaping the limit."""


def _ip_bucket(client_ip: str | None) -> str:
    return client_ip if client_ip is not None else UNKNOWN_CLIENT


@dataclass
class Factors(WebAuthnFactors):
    store: IdentityStore
    keyring: KeyRing
    hasher: PasswordHasher
    auditor: Auditor
    webauthn: WebAuthnSettings
    clock: Clock = time.time
    issuer: str = "Enclave"
    ip_window_s: int = 900
    ip_max_failures: int = 50

    # ----- throttling -----------------------------------------------------------------
    def _precheck(self, *, cred: Credential, client_ip: str | None, actor: str) -> None:
        now = self.clock()
        if cred.disabled:
            self._refused(actor=actor, client_ip=client_ip, factor=cred.kind, reason="disabled")
            raise ThrottledError(
                "This authenticator is disabled after too many failed attempts; "
                "ask a security officer to re-bind it.",
                retry_after_s=3600,
            )
        if cred.locked_until > now:
            self._refused(actor=actor, client_ip=client_ip, factor=cred.kind, reason="back-off")
            raise ThrottledError(
                "Too many failed attempts; wait before trying again.",
                retry_after_s=int(cred.locked_until - now) + 1,
            )
        self._ip_precheck(client_ip=client_ip, actor=actor)

    def _refused(self, *, actor: str, client_ip: str | None, factor: str, reason: str) -> None:
        """Audit an attempt refused by throttling before the factor was even checked."""
        self.auditor.record(
            action="auth.factor.refused",
            actor=actor,
            outcome="failure",
            client_ip=client_ip,
            details={"factor": factor, "reason": reason},
        )

    def _ip_precheck(self, *, client_ip: str | None, actor: str = "anonymous") -> None:
        n = self.store.count_ip_failures(
            ip=_ip_bucket(client_ip), now=self.clock(), window_s=self.ip_window_s
        )
        if n >= self.ip_max_failures:
            self._refused(actor=actor, client_ip=client_ip, factor="any", reason="client IP limit")
            raise ThrottledError(
                "Too many failed attempts from your network; wait before trying again.",
                retry_after_s=self.ip_window_s,
            )

    def count_address_failure(self, *, client_ip: str | None) -> None:
        """Count one failure against the client address (unknown addresses share one
        bucket: ``UNKNOWN_CLIENT``), for the per-address limit ``_ip_precheck`` applies."""
        self.store.add_ip_failure(
            ip=_ip_bucket(client_ip), now=self.clock(), window_s=self.ip_window_s
        )

    def _fail(
        self,
        *,
        user: User,
        cred: Credential,
        tier: Tier,
        client_ip: str | None,
        reason: str,
        message: str,
        enclave: str | None = None,
    ) -> FactorFailedError:
        now = self.clock()
        self.count_address_failure(client_ip=client_ip)
        after = self.store.record_failure(
            cred_id=cred.id,
            now=now,
            max_failures=tier.throttle.max_consecutive_failures,
            backoff_after=tier.throttle.backoff_after_failures,
            backoff_s=tier.throttle.backoff_initial_s,
        )
        self.auditor.record(
            action="auth.factor.failed",
            actor=user.username,
            outcome="failure",
            enclave=enclave,
            client_ip=client_ip,
            details={
                "factor": cred.kind,
                "category": _CATEGORY[cred.kind],
                "credential": cred.id,
                "reason": reason,
                "consecutive_failures": after.failures,
            },
        )
        if after.disabled and not cred.disabled:
            self.auditor.record(
                action="auth.authenticator.disabled",
                actor=user.username,
                outcome="success",
                client_ip=client_ip,
                details={"factor": cred.kind, "credential": cred.id, "failures": after.failures},
            )
        return FactorFailedError(message)

    def _pass(
        self,
        *,
        user: User,
        cred: Credential,
        factor: VerifiedFactor,
        client_ip: str | None,
        sign_count: int | None = None,
        enclave: str | None = None,
        reset_done: bool = False,
    ) -> FactorResult:
        if not reset_done:
            self.store.record_success(cred_id=cred.id, now=self.clock(), sign_count=sign_count)
        factor = dataclasses.replace(factor, approved=cred.approved)
        category = _CATEGORY[cred.kind]
        details: dict[str, Any] = {"factor": cred.kind, "category": category, "credential": cred.id}
        if cred.kind == "webauthn":
            details.update(
                user_verified=factor.user_verified,
                biometric_attested=factor.biometric_attested,
                backup_eligible=factor.backup_eligible,
            )
        self.auditor.record(
            action="auth.factor.verified",
            actor=user.username,
            outcome="success",
            enclave=enclave,
            client_ip=client_ip,
            details=details,
        )
        return FactorResult(factor=factor, credential_id=cred.id, category=category)

    # ----- knowledge: password -----------------------------------------------------------
    def _new_password_hash(self, *, user: User, password: str, tier: Tier) -> bytes:
        """The stored form of a new password, once it passes the policy (at least 12
        characters, or the tier's minimum if longer)."""
        check_password_policy(
            password=password,
            min_length=max(12, tier.login.password_min_length),
            username=user.username,
        )
        return self.hasher.hash(password=password).encode()

    def _password_enrolled(self, user: User) -> None:
        self.auditor.record(
            action="auth.enrolment.password",
            actor=user.username,
            outcome="success",
            details={"factor": "password", "category": "knowledge"},
        )

    def accept_invitation(self, *, token_hash: str, user: User, password: str, tier: Tier) -> bool:
        """Check the password, then consume the invitation and set the password in one
        store transaction: False (nothing changed) if another submission won."""
        password_hash = self._new_password_hash(user=user, password=password, tier=tier)
        if not self.store.accept_invitation(
            token_hash=token_hash,
            user_id=user.id,
            now=self.clock(),
            cred_id=str(uuid.uuid4()),
            password_hash=password_hash,
        ):
            return False
        self._password_enrolled(user)
        return True

    def set_password(self, *, user: User, password: str, tier: Tier) -> None:
        password_hash = self._new_password_hash(user=user, password=password, tier=tier)
        self.store.add_credential(
            cred_id=str(uuid.uuid4()),
            user_id=user.id,
            kind="password",
            label="password",
            secret=password_hash,
            now=self.clock(),
            approved=True,
            replace_kind=True,
        )
        self._password_enrolled(user)

    def verify_password(
        self, *, username: str, password: str, tier: Tier, client_ip: str | None
    ) -> tuple[User, FactorResult]:
        """Step 1 of login. The same answer (status, words, throttling) for an unknown
        user and a wrong password; ``username`` in any case is the same name
        (``canonical_username``), for the lookup and for the throttle alike. An
        over-long password is a failed attempt like any other (counted and audited)."""
        wrong = "The username or password is not correct."
        name = canonical_username(username)
        actor = name if name is not None else MALFORMED_USERNAME_ACTOR
        overlong = len(password) > MAX_PASSWORD
        if overlong:
            password = password[:MAX_PASSWORD]  # what is hashed, so the work is the same
        self._ip_precheck(client_ip=client_ip, actor=actor)
        user = self.store.find_user(username=name) if name is not None else None
        creds = self.store.list_credentials(user_id=user.id, kind="password") if user else []
        now = self.clock()
        rules = tier.throttle
        if user is None or user.status != "active" or not creds:
            # Not a usable account: count failures exactly as for a password credential.
            key = hash_token("name:" + (name if name is not None else ""))
            failures, locked_until = self.store.name_throttle(key=key)
            if failures >= rules.max_consecutive_failures or locked_until > now:
                self._refused(
                    actor=actor, client_ip=client_ip, factor="password", reason="throttled"
                )
                raise ThrottledError(
                    "Too many failed attempts; wait before trying again.",
                    retry_after_s=max(rules.backoff_initial_s, int(locked_until - now)),
                )
            self.hasher.burn(password=password)
            self.store.record_name_failure(
                key=key,
                now=now,
                backoff_after=rules.backoff_after_failures,
                backoff_s=rules.backoff_initial_s,
            )
            self.count_address_failure(client_ip=client_ip)
            self.auditor.record(
                action="auth.factor.failed",
                actor=actor,
                outcome="failure",
                client_ip=client_ip,
                details={
                    "factor": "password",
                    "category": "knowledge",
                    "reason": (
                        "malformed username"
                        if name is None
                        else "unknown user"
                        if user is None
                        else f"user {user.status}"
                    ),
                },
            )
            raise FactorFailedError(wrong)
        cred = creds[0]
        if cred.disabled or cred.locked_until > now:
            # Same words as for unknown names: existence is not revealed.
            self._refused(
                actor=user.username, client_ip=client_ip, factor="password", reason="throttled"
            )
            raise ThrottledError(
                "Too many failed attempts; wait before trying again.",
                retry_after_s=max(rules.backoff_initial_s, int(cred.locked_until - now)),
            )
        if overlong:
            self.hasher.burn(password=password)
        if overlong or not self.hasher.verify(stored=cred.secret.decode(), password=password):
            raise self._fail(
                user=user,
                cred=cred,
                tier=tier,
                client_ip=client_ip,
                reason="over-long password" if overlong else "wrong password",
                message=wrong,
            )
        return user, self._pass(
            user=user,
            cred=cred,
            factor=VerifiedFactor(kind=FactorKind.PASSWORD),
            client_ip=client_ip,
        )

    # ----- possession: TOTP -----------------------------------------------------------------
    def begin_totp_enrolment(self, *, user: User, session_hash: str) -> TotpEnrolment:
        secret = pyotp.random_base32(length=32)
        sealed = self.keyring.seal(
            plaintext=secret.encode(), context=f"totp-pending:{session_hash}"
        )
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=self.issuer)
        svg = segno.make(uri, error="m").svg_inline(scale=4, title="TOTP QR code")
        return TotpEnrolment(
            sealed_secret_b64=base64.b64encode(sealed).decode(),
            secret_b32=secret,
            provisioning_uri=uri,
            qr_svg=str(svg),
        )

    def reveal_pending_totp(self, *, sealed_secret_b64: str, session_hash: str) -> str:
        return self.keyring.open(
            sealed=base64.b64decode(sealed_secret_b64), context=f"totp-pending:{session_hash}"
        ).decode()

    def finish_totp_enrolment(
        self,
        *,
        user: User,
        sealed_secret_b64: str,
        session_hash: str,
        code: str,
        client_ip: str | None,
    ) -> Credential:
        secret = self.reveal_pending_totp(
            sealed_secret_b64=sealed_secret_b64, session_hash=session_hash
        )
        code = code.strip().replace(" ", "")
        step = self._match_step(secret=secret, code=code)
        if step is None:
            self.auditor.record(
                action="auth.enrolment.totp",
                actor=user.username,
                outcome="failure",
                client_ip=client_ip,
                details={"factor": "totp", "category": "possession", "reason": "wrong code"},
            )
            raise InvalidInputError(
                "The code does not match; check your device's clock and try again."
            )
        cred_id = str(uuid.uuid4())
        cred = self.store.add_credential(
            cred_id=cred_id,
            user_id=user.id,
            kind="totp",
            label="authenticator app",
            secret=self.keyring.seal(plaintext=secret.encode(), context=f"totp:{cred_id}"),
            now=self.clock(),
            replace_kind=True,
        )
        self.store.claim_totp_step(cred_id=cred_id, step=step)
        self.auditor.record(
            action="auth.enrolment.totp",
            actor=user.username,
            outcome="success",
            client_ip=client_ip,
            details={"factor": "totp", "category": "possession", "credential": cred_id},
        )
        return cred

    def _match_step(self, *, secret: str, code: str) -> int | None:
        if not (len(code) == 6 and code.isdigit()):
            return None
        now_step = int(self.clock()) // 30
        found = None
        for step in (now_step - 1, now_step, now_step + 1):
            # Check every candidate so timing does not tell which step matched.
            if hmac.compare_digest(totp_at(secret_b32=secret, for_time=step * 30), code):
                found = step
        return found

    def verify_totp(
        self,
        *,
        user: User,
        code: str,
        tier: Tier,
        client_ip: str | None,
        enclave: str | None = None,
    ) -> FactorResult:
        creds = self.store.list_credentials(user_id=user.id, kind="totp")
        if not creds:
            raise InvalidInputError("You have no authenticator app enrolled.")
        cred = creds[0]
        self._precheck(cred=cred, client_ip=client_ip, actor=user.username)
        code = code.strip().replace(" ", "")
        failure: tuple[str, str] | None = None  # (reason for the log, message)
        if not (len(code) == 6 and code.isdigit()):
            # Over-long or malformed: a failed attempt, counted and audited like a wrong one.
            failure = ("malformed code", "The code must be 6 digits.")
        else:
            secret = self.keyring.open(sealed=cred.secret, context=f"totp:{cred.id}").decode()
            step = self._match_step(secret=secret, code=code)
            if step is None:
                failure = ("wrong code", "The code is not correct.")
            elif not self.store.claim_totp_step(cred_id=cred.id, step=step, now=self.clock()):
                failure = ("code reused", "That code was already used; wait for the next one.")
        if failure is not None:
            raise self._fail(
                user=user,
                cred=cred,
                tier=tier,
                client_ip=client_ip,
                reason=failure[0],
                message=failure[1],
                enclave=enclave,
            )
        return self._pass(
            user=user,
            cred=cred,
            factor=VerifiedFactor(kind=FactorKind.TOTP),
            client_ip=client_ip,
            enclave=enclave,
            reset_done=True,
        )


def factor_to_json(f: FactorResult, *, at: float) -> dict[str, Any]:
    return {
        "kind": f.factor.kind.value,
        "credential": f.credential_id,
        "user_verified": f.factor.user_verified,
        "biometric_attested": f.factor.biometric_attested,
        "backup_eligible": f.factor.backup_eligible,
        "biometric_amr": f.factor.biometric_amr,
        "approved": f.factor.approved,
        "at": at,
    }


def factors_from_json(items: Sequence[Mapping[str, Any]]) -> list[VerifiedFactor]:
    """The session's verified factors, each with the officer approval its credential
    had when it was verified (``policies.evaluate_login`` decides what counts)."""
    return [
        VerifiedFactor(
            kind=FactorKind(it["kind"]),
            user_verified=bool(it.get("user_verified")),
            biometric_attested=bool(it.get("biometric_attested")),
            backup_eligible=bool(it.get("backup_eligible")),
            biometric_amr=it.get("biometric_amr"),
            approved=bool(it.get("approved", False)),
        )
        for it in items
    ]
