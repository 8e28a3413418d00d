"""WebAuthn ceremonies (py_webauthn), one method per step: registration and
authentication, each ``begin_*`` then ``finish_*``.

A part of ``auth._factors.Factors``, which supplies the store, the audit and the
throttle (``_precheck``, ``_fail``, ``_pass``) these steps use.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import webauthn
from cryptography import x509
from webauthn.helpers import options_to_json, parse_attestation_object
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialRequestOptions,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ._audit import Auditor
from ._errors import FactorFailedError, ForbiddenError, InvalidInputError
from ._policy import FactorKind, Tier, VerifiedFactor
from ._store import Credential, IdentityStore, User

__all__ = ["MAX_WEBAUTHN_JSON", "FactorResult", "WebAuthnFactors", "WebAuthnSettings"]

MAX_WEBAUTHN_JSON = 16 * 1024
_FIDO_AAGUID_OID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")


@dataclass(frozen=True)
class FactorResult:
    """A factor that verified: what it proves and which credential proved it."""

    factor: VerifiedFactor
    credential_id: str
    category: str


@dataclass(frozen=True)
class WebAuthnSettings:
    rp_id: str
    rp_name: str
    origins: tuple[str, ...]
    # AAGUID (lower-case, dashed) -> RFC 8176 amr of its only UV method ("fpt"/"face").
    biometric_aaguids: Mapping[str, str] = field(default_factory=dict)
    # PEM roots per attestation format; attestation is verified against them.
    attestation_roots: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)
    challenge_ttl_s: int = 300


class WebAuthnFactors:
    """The WebAuthn half of ``Factors``, which supplies the attributes and the
    throttle steps declared here."""

    store: IdentityStore
    auditor: Auditor
    webauthn: WebAuthnSettings

    clock: Callable[[], float]

    # The throttle steps of ``Factors`` (auth._factors), where they are defined.
    _precheck: Callable[..., None]
    _fail: Callable[..., FactorFailedError]
    _pass: Callable[..., FactorResult]

    def begin_webauthn_registration(
        self, *, user: User, session_hash: str, user_verification: bool
    ) -> str:
        """Registration options; ``userVerification`` is ``required`` when a tier the
        key will be used at requires UV (``user_verification``), else ``preferred``."""
        existing = self.store.list_credentials(user_id=user.id, kind="webauthn")
        opts = webauthn.generate_registration_options(
            rp_id=self.webauthn.rp_id,
            rp_name=self.webauthn.rp_name,
            user_name=user.username,
            user_id=user.id.encode(),
            user_display_name=user.display_name,
            attestation=(
                AttestationConveyancePreference.DIRECT
                if self.webauthn.biometric_aaguids
                else AttestationConveyancePreference.NONE
            ),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=_uv_requirement(user_verification),
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=c.webauthn_id) for c in existing if c.webauthn_id
            ],
        )
        return self._issue(session_hash=session_hash, purpose="webauthn-register", options=opts)

    def _issue(
        self,
        *,
        session_hash: str,
        purpose: str,
        options: PublicKeyCredentialCreationOptions | PublicKeyCredentialRequestOptions,
    ) -> str:
        """Keep the challenge of ``options`` for this session until it expires; the
        options as the JSON the browser receives."""
        self.store.put_challenge(
            session_hash=session_hash,
            purpose=purpose,
            challenge=options.challenge,
            expires_at=self.clock() + self.webauthn.challenge_ttl_s,
        )
        return str(options_to_json(options))

    def _take(self, *, session_hash: str, purpose: str, user: str, client_ip: str | None) -> bytes:
        ch = self.store.take_challenge(session_hash=session_hash, purpose=purpose, now=self.clock())
        if ch is None:
            self.auditor.record(
                action="auth.webauthn.rejected",
                actor=user,
                outcome="failure",
                client_ip=client_ip,
                details={
                    "reason": "no pending challenge (expired or already used)",
                    "ceremony": purpose,
                },
            )
            raise InvalidInputError(
                "No WebAuthn ceremony is pending (it expired or was already used); start again."
            )
        return ch

    def _reject(
        self, *, user: str, client_ip: str | None, ceremony: str, message: str
    ) -> InvalidInputError:
        """Audit a refused WebAuthn payload and return the 400 to raise."""
        self.auditor.record(
            action="auth.webauthn.rejected",
            actor=user,
            outcome="failure",
            client_ip=client_ip,
            details={"reason": message, "ceremony": ceremony},
        )
        return InvalidInputError(message)

    def _parse(
        self, payload: str, *, user: str, client_ip: str | None, ceremony: str
    ) -> dict[str, Any]:
        def bad(message: str) -> InvalidInputError:
            return self._reject(user=user, client_ip=client_ip, ceremony=ceremony, message=message)

        if len(payload) > MAX_WEBAUTHN_JSON:
            raise bad(f"The WebAuthn response is larger than {MAX_WEBAUTHN_JSON} bytes.")
        try:
            data = json.loads(payload)
        except ValueError:
            raise bad("The WebAuthn response is not valid JSON.") from None
        if not isinstance(data, dict):
            raise bad("The WebAuthn response must be a JSON object.")
        return data

    def finish_webauthn_registration(
        self,
        *,
        user: User,
        session_hash: str,
        credential_json: str,
        client_ip: str | None,
        session_aal: int | None,
    ) -> Credential:
        """Verify and store a new key. ``session_aal`` is the assurance level the
        signed-in session proved (None: the first enrolment after an invitation). A
        key that could reach AAL3 (device-bound, user verified at registration) is
        bound only by a session at AAL3 (NIST SP 800-63B-4 section 4.1: bind at the
        level the new authenticator will be used at); nothing is stored otherwise."""
        challenge = self._take(
            session_hash=session_hash,
            purpose="webauthn-register",
            user=user.username,
            client_ip=client_ip,
        )
        data = self._parse(
            credential_json, user=user.username, client_ip=client_ip, ceremony="webauthn-register"
        )
        try:
            v = webauthn.verify_registration_response(
                credential=data,
                expected_challenge=challenge,
                expected_rp_id=self.webauthn.rp_id,
                expected_origin=list(self.webauthn.origins),
                require_user_verification=False,
                pem_root_certs_bytes_by_fmt={
                    AttestationFormat(k): list(v)
                    for k, v in self.webauthn.attestation_roots.items()
                }
                or None,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError, IndexError) as e:
            reason = _trim(e)
            self._enrolment_refused(user=user, client_ip=client_ip, reason=reason)
            raise InvalidInputError(f"The WebAuthn registration was refused: {reason}") from None
        backup_eligible = v.credential_device_type == CredentialDeviceType.MULTI_DEVICE
        reaches = 3 if v.user_verified and not backup_eligible else 2
        if session_aal is not None and session_aal < reaches:
            reason = (
                f"adding this security key needs a sign-in at AAL{reaches} (with a security "
                f"key that verified you); this session reached AAL{session_aal}. Sign in with "
                "such a key, or ask a security officer to re-bind your account"
            )
            self._enrolment_refused(user=user, client_ip=client_ip, reason=reason)
            raise ForbiddenError(reason[0].upper() + reason[1:] + ".")
        fmt = str(getattr(v.fmt, "value", v.fmt))
        aaguid = str(v.aaguid).lower()
        attested = self._biometric_attested(
            fmt=fmt, aaguid=aaguid, attestation_object=v.attestation_object
        )
        cred_id = str(uuid.uuid4())
        cred = self.store.add_credential(
            cred_id=cred_id,
            user_id=user.id,
            kind="webauthn",
            label=f"security key {aaguid[:8]}",
            secret=v.credential_public_key,
            webauthn_id=v.credential_id,
            sign_count=v.sign_count,
            aaguid=aaguid,
            uv_capable=bool(v.user_verified),
            backup_eligible=backup_eligible,
            biometric_attested=attested,
            now=self.clock(),
        )
        self.auditor.record(
            action="auth.enrolment.webauthn",
            actor=user.username,
            outcome="success",
            client_ip=client_ip,
            details={
                "factor": "webauthn",
                "category": "biometric" if attested else "possession",
                "credential": cred_id,
                "aaguid": aaguid,
                "attestation": fmt,
                "user_verified": bool(v.user_verified),
                "backup_eligible": cred.backup_eligible,
            },
        )
        return cred

    def _enrolment_refused(self, *, user: User, client_ip: str | None, reason: str) -> None:
        self.auditor.record(
            action="auth.enrolment.webauthn",
            actor=user.username,
            outcome="failure",
            client_ip=client_ip,
            details={"factor": "webauthn", "category": "possession", "reason": reason},
        )

    def _biometric_attested(self, *, fmt: str, aaguid: str, attestation_object: bytes) -> bool:
        """Is this credential an allow-listed biometric model, proven by attestation?

        1. The AAGUID is on the operator's biometric allow-list.
        2. The format has operator-supplied trust roots, so py_webauthn has verified
           the x5c chain against them (it skips the chain check without roots).
        3. The statement carries an x5c chain: self attestation proves nothing about
           the model, whatever AAGUID the authenticator claims.
        4. The attestation certificate names the same AAGUID (FIDO extension
           1.3.6.1.4.1.45724.1.1.4); a certificate without it is not trusted here.
        """
        if aaguid not in self.webauthn.biometric_aaguids:  # 1
            return False
        if fmt == "none" or fmt not in self.webauthn.attestation_roots:  # 2
            return False
        x5c = parse_attestation_object(attestation_object).att_stmt.x5c or []
        if not x5c:  # 3
            return False
        try:
            cert = x509.load_der_x509_certificate(x5c[0])
            ext = cert.extensions.get_extension_for_oid(_FIDO_AAGUID_OID).value
        except (ValueError, x509.ExtensionNotFound):
            return False
        raw = getattr(ext, "value", b"")
        if len(raw) != 18 or raw[:2] != b"\x04\x10":  # DER OCTET STRING of 16 bytes
            return False
        return raw[2:].hex() == aaguid.replace("-", "")  # 4

    def begin_webauthn_authentication(
        self, *, user: User, session_hash: str, user_verification: bool
    ) -> str:
        """Authentication options; ``userVerification`` is ``required`` when the tier of
        this ceremony requires UV (``user_verification``), else ``preferred``."""
        creds = [
            c
            for c in self.store.list_credentials(user_id=user.id, kind="webauthn")
            if c.webauthn_id
        ]
        if not creds:
            raise InvalidInputError("You have no security key or passkey enrolled.")
        opts = webauthn.generate_authentication_options(
            rp_id=self.webauthn.rp_id,
            allow_credentials=[
                PublicKeyCredentialDescriptor(id=c.webauthn_id) for c in creds if c.webauthn_id
            ],
            user_verification=_uv_requirement(user_verification),
        )
        return self._issue(session_hash=session_hash, purpose="webauthn-authenticate", options=opts)

    def finish_webauthn_authentication(
        self,
        *,
        user: User,
        session_hash: str,
        credential_json: str,
        tier: Tier,
        client_ip: str | None,
        enclave: str | None = None,
    ) -> FactorResult:
        """Verify an assertion. Where the tier needs UV, an assertion without it FAILS."""
        challenge = self._take(
            session_hash=session_hash,
            purpose="webauthn-authenticate",
            user=user.username,
            client_ip=client_ip,
        )
        ceremony = "webauthn-authenticate"
        data = self._parse(
            credential_json, user=user.username, client_ip=client_ip, ceremony=ceremony
        )
        raw_id = data.get("rawId") or data.get("id")
        if not isinstance(raw_id, str) or not raw_id or len(raw_id) > 1400:
            raise self._reject(
                user=user.username,
                client_ip=client_ip,
                ceremony=ceremony,
                message="The WebAuthn response has no valid credential id.",
            )
        try:
            cred_bytes = base64.b64decode(
                raw_id + "=" * (-len(raw_id) % 4), altchars=b"-_", validate=True
            )
        except ValueError:
            raise self._reject(
                user=user.username,
                client_ip=client_ip,
                ceremony=ceremony,
                message="The WebAuthn credential id is not base64url.",
            ) from None
        cred = self.store.find_webauthn(webauthn_id=cred_bytes)
        if cred is None or cred.user_id != user.id:
            raise self._reject(
                user=user.username,
                client_ip=client_ip,
                ceremony=ceremony,
                message="That security key is not enrolled for your account.",
            )
        self._precheck(cred=cred, client_ip=client_ip, actor=user.username)
        need_uv = tier.login.webauthn_user_verification
        try:
            v = webauthn.verify_authentication_response(
                credential=data,
                expected_challenge=challenge,
                expected_rp_id=self.webauthn.rp_id,
                expected_origin=list(self.webauthn.origins),
                credential_public_key=cred.secret,
                credential_current_sign_count=cred.sign_count,
                require_user_verification=need_uv,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError, IndexError) as e:
            reason = _trim(e)
            raise self._fail(
                user=user,
                cred=cred,
                tier=tier,
                client_ip=client_ip,
                reason=reason,
                message=f"The security key check failed: {reason}",
                enclave=enclave,
            ) from None
        # A key registered without UV was bound as a single-factor key: it never
        # counts as verifying the user, whatever a later assertion's flag says.
        uv = bool(v.user_verified and cred.uv_capable)
        factor = VerifiedFactor(
            kind=FactorKind.WEBAUTHN,
            user_verified=uv,
            biometric_attested=bool(uv and cred.biometric_attested and cred.approved),
            backup_eligible=cred.backup_eligible
            or v.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            biometric_amr=(
                self.webauthn.biometric_aaguids.get(cred.aaguid or "")
                if uv and cred.biometric_attested and cred.approved
                else None
            ),
        )
        return self._pass(
            user=user,
            cred=cred,
            factor=factor,
            client_ip=client_ip,
            sign_count=v.new_sign_count,
            enclave=enclave,
        )


def _uv_requirement(required: bool) -> UserVerificationRequirement:
    return (
        UserVerificationRequirement.REQUIRED if required else UserVerificationRequirement.PREFERRED
    )


def _trim(e: BaseException) -> str:
    text = " ".join(str(e).split())[:200] or type(e).__name__
    return text if text.endswith(".") else text + "."
