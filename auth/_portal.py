"""The portal's services, shared by the web app, the admin API and the CLI.

Admin operations (invite, disable, approve, re-bind, enclave registration) live
here once, so the HTTP API and the CLI cannot drift; each one is audited.
"""

from __future__ import annotations

import ipaddress
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._audit import Auditor, AuditSink
from ._crypto import Argon2Params, KeyRing, PasswordHasher, hash_token, new_token
from ._errors import ConflictError, InvalidInputError, NotFoundError
from ._factors import Factors, WebAuthnSettings
from ._names import canonical_username, require_username
from ._oidc import SigningKeys
from ._policy import Tier, UnknownTierError, client_address, load_catalog, parse_proxies
from ._store import ClientRecord, EnclaveRecord, IdentityStore, User, open_store

__all__ = ["Invitation", "Portal", "PortalSettings", "RegisteredEnclave"]

_ENCLAVE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ROLES = frozenset({"researcher", "pi", "officer", "admin"})
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class PortalSettings:
    """Everything the portal is configured with. Times are seconds."""

    issuer: str  # e.g. https://portal.example; also the WebAuthn origin
    store_url: str
    key_file: Path  # AES-GCM key ring, one kid:base64 per line, first seals
    # Where audit events go (auth._audit.open_sink): the audit service's URL
    # (http[s]://..., with audit_token_file and audit_spool), an audit store URL
    # (sqlite:///..., postgresql://...: appended in-process), or a JSON-lines file.
    audit_target: str
    rp_id: str = "localhost"
    rp_name: str = "Enclave"
    login_tier: str = "nbdc-standard"  # what a portal login itself must prove (SATRE: MFA)
    biometric_aaguids: Mapping[str, str] = field(default_factory=dict)
    attestation_roots: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For we believe
    admin_token_hash: str | None = None  # SHA-256 of the admin API bearer token
    invitation_ttl_s: int = 72 * 3600
    code_ttl_s: int = 60
    access_token_ttl_s: int = 600
    id_token_ttl_s: int = 300
    argon2: Argon2Params = field(default_factory=Argon2Params)
    hsts: bool = True  # sent on https requests only
    audit_token_file: Path | None = None  # the portal's intake token (service mode)
    audit_spool: Path | None = None  # durable spool while the service is away


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def check_client_uri(uri: str) -> None:
    """A redirect (or hub) URI: absolute https without a fragment; plain http only for a
    loopback host (RFC 8252 section 7.3), where no network carries the code."""
    try:
        parts = urllib.parse.urlsplit(uri)
        host = parts.hostname
    except ValueError:
        host = None
    ok = (
        re.match(r"^https?://[^\s#]+$", uri) is not None
        and bool(host)
        and (parts.scheme == "https" or host in _LOOPBACK)
    )
    if not ok:
        raise InvalidInputError(
            f"{uri[:200]!r} must be an absolute https URL without fragment "
            "(http only for localhost, 127.0.0.1 or ::1)."
        )


@dataclass(frozen=True)
class Invitation:
    username: str
    code: str  # shown once to the inviter; stored only as SHA-256
    expires_at: float


@dataclass(frozen=True)
class RegisteredEnclave:
    enclave: EnclaveRecord
    client: ClientRecord | None
    client_secret: str | None  # only when newly generated


class Portal:
    """Wires the store, key ring, factors, signing keys and auditor together."""

    def __init__(
        self,
        *,
        settings: PortalSettings,
        sink: AuditSink,
        clock: Callable[[], float] = time.time,
        store: IdentityStore | None = None,
        keyring: KeyRing | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.catalog = load_catalog()
        self.catalog.get(settings.login_tier)
        self.store = store or open_store(url=settings.store_url)
        self.keyring = keyring or KeyRing.from_file(path=settings.key_file)
        self.auditor = Auditor(sink=sink, clock=clock)
        self.hasher = PasswordHasher(params=settings.argon2)
        self.factors = Factors(
            store=self.store,
            keyring=self.keyring,
            hasher=self.hasher,
            auditor=self.auditor,
            webauthn=WebAuthnSettings(
                rp_id=settings.rp_id,
                rp_name=settings.rp_name,
                origins=(settings.issuer.rstrip("/"),),
                biometric_aaguids=dict(settings.biometric_aaguids),
                attestation_roots=dict(settings.attestation_roots),
            ),
            clock=clock,
            issuer=settings.rp_name,
        )
        self.keys = SigningKeys(store=self.store, keyring=self.keyring, clock=clock)
        self._proxies = parse_proxies(settings.trusted_proxies)

    # ----- tiers and networks -------------------------------------------------------------
    def tier(self, name: str) -> Tier:
        try:
            return self.catalog.get(name)
        except UnknownTierError:
            raise InvalidInputError(f"Unknown tier {name!r}.") from None

    @property
    def login_tier(self) -> Tier:
        return self.catalog.get(self.settings.login_tier)

    def client_tier(self, client: ClientRecord) -> Tier:
        """The tier ``client`` demands: its enclave's for a hub, its registered one
        otherwise, the login tier when none was registered."""
        if client.enclave is not None:
            enc = self.store.get_enclave(name=client.enclave)
            if enc is None:
                raise NotFoundError(f"Client {client.client_id!r} has no enclave any more.")
            return self.tier(enc.tier)
        return self.tier(client.tier) if client.tier else self.login_tier

    def client_ip(self, *, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client address: every X-Forwarded-For line, believed only as far as
        trusted proxies wrote it (see :func:`policies.client_address`)."""
        return client_address(peer=peer, forwarded_for=forwarded_for, trusted_proxies=self._proxies)

    # ----- users ---------------------------------------------------------------------------
    def invite_user(
        self,
        *,
        username: str,
        display_name: str,
        roles: Sequence[str],
        locale: str,
        actor: str,
    ) -> Invitation:
        """Invite a person, or re-invite one whose account is still ``invited``: the new
        code cancels every older one and the account takes ``roles`` (so the audit event
        and the account agree). An account already in use is refused (audited): re-bind
        it instead."""
        username = require_username(username)
        bad = set(roles) - ROLES
        if bad or not roles:
            raise InvalidInputError(f"Roles must be some of {sorted(ROLES)}; got {sorted(roles)}.")
        if locale not in ("en", "ja"):
            raise InvalidInputError("The locale must be 'en' or 'ja'.")
        user = self.store.find_user(username=username)
        if user is None:
            user = self.store.create_user(
                user_id=str(uuid.uuid4()),
                username=username,
                display_name=display_name or username,
                roles=frozenset(roles),
                status="invited",
                locale=locale,
                now=self.clock(),
            )
        return self._issue(user=user, roles=frozenset(roles), actor=actor, rebind=False)[0]

    def _issue(
        self, *, user: User, roles: frozenset[str], actor: str, rebind: bool
    ) -> tuple[Invitation, int]:
        """A new code for ``user`` and how many older codes it cancelled (see
        ``IdentityStore.issue_invitation``), audited as ``admin.user.invited`` whether
        it was issued or refused."""
        code = new_token(nbytes=24)
        expires = self.clock() + self.settings.invitation_ttl_s
        details: dict[str, Any] = {"user": user.username, "roles": sorted(roles)}
        try:
            cancelled = self.store.issue_invitation(
                user_id=user.id,
                token_hash=hash_token(code),
                created_by=actor,
                expires_at=expires,
                roles=roles,
                rebind=rebind,
            )
        except ConflictError:
            status = self.store.get_user(user_id=user.id).status
            self.auditor.record(
                action="admin.user.invited",
                actor=actor,
                outcome="failure",
                details={**details, "reason": f"account {status}"},
            )
            raise ConflictError(
                f"User {user.username!r} exists already ({status}); "
                "re-bind the account to issue a new invitation."
            ) from None
        self.auditor.record(
            action="admin.user.invited",
            actor=actor,
            outcome="success",
            details={**details, "expires_at": int(expires), "invitations_cancelled": cancelled},
        )
        return Invitation(username=user.username, code=code, expires_at=expires), cancelled

    def user(self, username: str) -> User:
        u = self.store.find_user(username=username)
        if u is None:
            raise NotFoundError(f"No user named {username[:200]!r}.")
        return u

    def disable_user(self, *, username: str, actor: str) -> int:
        """Disable the account: its outstanding invitation codes are cancelled with it,
        its sessions end and its access tokens are revoked."""
        u = self.user(username)
        cancelled = self.store.disable_user(user_id=u.id)
        n = self.revoke_sessions(user_id=u.id, actor=actor, reason="user disabled")
        self.store.revoke_user_tokens(user_id=u.id)
        self.auditor.record(
            action="admin.user.disabled",
            actor=actor,
            outcome="success",
            details={"user": u.username, "sessions_revoked": n, "invitations_cancelled": cancelled},
        )
        return n

    def approve_credential(self, *, username: str, credential_id: str, actor: str) -> None:
        """Approve one of the user's pending (non-password) credentials, named by its id:
        an officer checks each credential (never "all pending", which would approve a
        key an attacker enrolled next to the user's own)."""
        u = self.user(username)
        found = [c for c in self.store.list_credentials(user_id=u.id) if c.id == credential_id]
        if not found:
            raise NotFoundError(f"User {username!r} has no credential {credential_id[:64]!r}.")
        c = found[0]
        if c.kind == "password" or c.approved:
            raise InvalidInputError(f"Credential {c.id} is not waiting for approval.")
        self.store.approve_credential(cred_id=c.id)
        self.auditor.record(
            action="admin.credential.approved",
            actor=actor,
            outcome="success",
            details={"user": username, "credential": c.id, "factor": c.kind, "aaguid": c.aaguid},
        )

    def rebind_user(self, *, username: str, actor: str) -> Invitation:
        """Officer-assisted recovery: in one store transaction every credential is
        dropped, the account returns to ``invited`` and gets a new code (older codes
        cancelled); then its sessions end and its access tokens are revoked."""
        u = self.user(username)
        invitation, cancelled = self._issue(user=u, roles=u.roles, actor=actor, rebind=True)
        self.revoke_sessions(user_id=u.id, actor=actor, reason="re-binding")
        self.store.revoke_user_tokens(user_id=u.id)
        self.auditor.record(
            action="admin.user.rebound",
            actor=actor,
            outcome="success",
            details={"user": u.username, "invitations_cancelled": cancelled},
        )
        return invitation

    def revoke_sessions(self, *, user_id: str, actor: str, reason: str) -> int:
        n = 0
        for s in self.store.list_sessions(user_id=user_id):
            if self.store.end_session(id_hash=s.id_hash, now=self.clock()):
                n += 1
                self.auditor.record(
                    action="session.ended",
                    actor=actor,
                    outcome="success",
                    details={"session": s.id_hash[:16], "reason": reason, "user_id": user_id},
                )
        return n

    # ----- enclaves --------------------------------------------------------------------------
    def register_enclave(
        self,
        *,
        name: str,
        tier: str,
        display_name: str,
        members: Sequence[tuple[str, str]],
        networks: Sequence[str],
        hub_url: str,
        client_id: str | None,
        redirect_uris: Sequence[str],
        post_logout_redirect_uris: Sequence[str] = (),
        rotate_secret: bool = False,
        actor: str,
    ) -> RegisteredEnclave:
        if not _ENCLAVE.match(name):
            raise InvalidInputError("The enclave name must be a DNS-1123 label (a-z, 0-9, -).")
        t = self.tier(tier)
        for n in networks:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                raise InvalidInputError(f"{n!r} is not a network in CIDR notation.") from None
        if t.network.source_allowlist_required and not networks:
            raise InvalidInputError(
                f"Tier {tier} requires a source network allow-list (accessNetworks)."
            )
        canonical = [(canonical_username(u), role) for u, role in members]
        for (u, role), (member, _) in zip(members, canonical, strict=True):
            if member is None or role not in ROLES:
                raise InvalidInputError(f"Member {u[:200]!r} with role {role!r} is not valid.")
        members = [(m, role) for m, role in canonical if m is not None]
        if len({m for m, _ in members}) != len(members):
            raise InvalidInputError("A member is listed twice (names are not case-sensitive).")
        for uri in [*redirect_uris, *post_logout_redirect_uris, hub_url]:
            if uri:
                check_client_uri(uri)
        added, removed = self.store.put_enclave(
            name=name,
            tier=tier,
            display_name=display_name or name,
            networks=list(networks),
            members=list(members),
            hub_url=hub_url,
            now=self.clock(),
        )
        secret = None
        client = None
        if client_id:
            client = self.store.get_client(client_id=client_id)
            if client is None or rotate_secret:
                secret = new_token(nbytes=32)
                secret_hash = hash_token(secret)
            else:
                secret_hash = client.secret_hash
            self.store.put_client(
                client_id=client_id,
                secret_hash=secret_hash,
                redirect_uris=list(redirect_uris),
                post_logout_redirect_uris=list(post_logout_redirect_uris),
                enclave=name,
                now=self.clock(),
            )
            client = self.store.get_client(client_id=client_id)
        for username in removed:
            gone = self.store.find_user(username=username)
            if gone is not None:
                # Membership changes take effect at once: no further tokens for this enclave.
                self.store.revoke_user_tokens(user_id=gone.id, enclave=name)
        self.auditor.record(
            action="admin.enclave.registered",
            actor=actor,
            outcome="success",
            enclave=name,
            details={
                "tier": tier,
                "members_added": sorted(added),
                "members_removed": sorted(removed),
                "networks": list(networks),
                "client_id": client_id,
                "client_secret_issued": secret is not None,
            },
        )
        enc = self.store.get_enclave(name=name)
        assert enc is not None
        return RegisteredEnclave(enclave=enc, client=client, client_secret=secret)

    def register_client(
        self,
        *,
        client_id: str,
        redirect_uris: Sequence[str],
        post_logout_redirect_uris: Sequence[str],
        tier: str | None,
        actor: str,
    ) -> str:
        """A client not tied to an enclave (e.g. the audit UI); returns its new secret.

        ``tier`` is the tier the client demands (the audit UI: its minimum tier; None:
        the portal's login tier): its ID tokens' ``amr``/``acr``/``enclave_factors`` are
        computed against that tier and a sign-in below it is stepped up or refused at
        ``/oidc/authorize``.

        Registering an existing id replaces it (a new secret); an enclave hub's client
        is refused here (it belongs to ``register_enclave``)."""
        if not _CLIENT_ID.match(client_id):
            raise InvalidInputError(
                "client_id must be 1-128 characters of a-z A-Z 0-9 . _ - starting with a "
                "letter or digit."
            )
        if not redirect_uris:
            raise InvalidInputError("A client needs at least one redirect URI.")
        for uri in (*redirect_uris, *post_logout_redirect_uris):
            check_client_uri(uri)
        if tier is not None:
            self.tier(tier)  # an unknown tier is refused before anything changes
        existing = self.store.get_client(client_id=client_id)
        if existing is not None and existing.enclave is not None:
            raise InvalidInputError(
                f"Client {client_id!r} belongs to enclave {existing.enclave!r}; "
                "change it with `enclave enclaves register`."
            )
        secret = new_token(nbytes=32)
        self.store.put_client(
            client_id=client_id,
            secret_hash=hash_token(secret),
            redirect_uris=list(redirect_uris),
            post_logout_redirect_uris=list(post_logout_redirect_uris),
            enclave=None,
            now=self.clock(),
            tier=tier,
        )
        self.auditor.record(
            action="admin.client.registered",
            actor=actor,
            outcome="success",
            details={"client_id": client_id, "redirect_uris": list(redirect_uris), "tier": tier},
        )
        return secret

    def remove_enclave(self, *, name: str, actor: str) -> None:
        enc = self.store.get_enclave(name=name)
        if enc is None:
            raise NotFoundError(f"No enclave named {name!r}.")
        for username, _ in enc.members:
            u = self.store.find_user(username=username)
            if u is not None:
                self.store.revoke_user_tokens(user_id=u.id, enclave=name)
        self.store.remove_enclave(name=name)
        self.auditor.record(
            action="admin.enclave.removed", actor=actor, outcome="success", enclave=name
        )

    def describe_enclave(self, enc: EnclaveRecord) -> dict[str, Any]:
        return {
            "name": enc.name,
            "tier": enc.tier,
            "display_name": enc.display_name,
            "networks": list(enc.networks),
            "members": [{"user": u, "role": r} for u, r in enc.members],
            "hub_url": enc.hub_url,
        }
