"""The portal: enrolment, authentication factors, sessions and the OIDC provider.

Called by each enclave's hub (as an OIDC client) and by the controller (admin
API). It must never issue a token whose factors do not meet the enclave's tier.
"""

from ._audit import Auditor, AuditSink, FileAuditSink, MemoryAuditSink
from ._crypto import Argon2Params, KeyRing, PasswordHasher
from ._errors import (
    AuditUnavailableError,
    AuthError,
    ConflictError,
    FactorFailedError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    ThrottledError,
    UnauthenticatedError,
)
from ._factors import (
    FactorResult,
    Factors,
    TotpEnrolment,
    WebAuthnSettings,
    check_password_policy,
    totp_at,
)
from ._oidc import SigningKeys
from ._portal import Invitation, Portal, PortalSettings, RegisteredEnclave
from ._store import IdentityStore, open_store
from ._web import create_app

__all__ = [
    "Argon2Params",
    "AuditSink",
    "AuditUnavailableError",
    "Auditor",
    "AuthError",
    "ConflictError",
    "FactorFailedError",
    "FactorResult",
    "Factors",
    "FileAuditSink",
    "ForbiddenError",
    "IdentityStore",
    "InvalidInputError",
    "Invitation",
    "KeyRing",
    "MemoryAuditSink",
    "NotFoundError",
    "PasswordHasher",
    "Portal",
    "PortalSettings",
    "RegisteredEnclave",
    "SigningKeys",
    "ThrottledError",
    "TotpEnrolment",
    "UnauthenticatedError",
    "WebAuthnSettings",
    "check_password_policy",
    "create_app",
    "open_store",
    "totp_at",
]
