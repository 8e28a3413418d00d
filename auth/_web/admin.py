"""The admin API (Bearer admin token): users, enclaves, clients, sessions, keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from .._app import Admin, Web, WebDep
from .._errors import (
    InvalidInputError,
    NotFoundError,
)
from .._portal import Invitation
from .._provider import (
    rotate_signing_key,
)
from .._store import EnclaveRecord, User
from ._models import (
    ClientIn,
    ClientOut,
    EnclaveIn,
    EnclaveOut,
    InviteRequest,
    InviteResponse,
    SessionOut,
    SessionsEnded,
    UserOut,
)

__all__ = ["router"]

router = APIRouter()


def invitation_out(inv: Invitation) -> InviteResponse:
    return InviteResponse(
        username=inv.username, invitation_code=inv.code, expires_at=int(inv.expires_at)
    )


@router.post("/api/admin/users", response_model=InviteResponse, status_code=201)
def api_invite(web: WebDep, body: InviteRequest, actor: Admin) -> InviteResponse:
    inv = web.portal.invite_user(
        username=body.username,
        display_name=body.display_name,
        roles=body.roles,
        locale=body.locale,
        actor=actor,
    )
    return invitation_out(inv)


def user_out(web: Web, u: User) -> UserOut:
    return UserOut(
        username=u.username,
        display_name=u.display_name,
        roles=sorted(u.roles),
        status=u.status,
        credentials=[
            {
                "id": c.id,
                "kind": c.kind,
                "approved": c.approved,
                "disabled": c.disabled,
                "failures": c.failures,
                "backup_eligible": c.backup_eligible,
                "biometric_attested": c.biometric_attested,
                "aaguid": c.aaguid,
            }
            for c in web.store.list_credentials(user_id=u.id)
        ],
    )


@router.get("/api/admin/users", response_model=list[UserOut])
def api_users(web: WebDep, actor: Admin) -> list[UserOut]:
    return [user_out(web, u) for u in web.store.list_users()]


@router.post("/api/admin/users/{username}/disable", response_model=UserOut)
def api_disable(web: WebDep, username: str, actor: Admin) -> UserOut:
    web.portal.disable_user(username=username, actor=actor)
    return user_out(web, web.portal.user(username))


@router.post(
    "/api/admin/users/{username}/credentials/{credential_id}/approve", response_model=UserOut
)
def api_approve(web: WebDep, username: str, credential_id: str, actor: Admin) -> UserOut:
    web.portal.approve_credential(username=username, credential_id=credential_id, actor=actor)
    return user_out(web, web.portal.user(username))


@router.post("/api/admin/users/{username}/rebind", response_model=InviteResponse)
def api_rebind(web: WebDep, username: str, actor: Admin) -> InviteResponse:
    inv = web.portal.rebind_user(username=username, actor=actor)
    return invitation_out(inv)


def enclave_out(
    web: Web, e: EnclaveRecord, client_id: str | None = None, secret: str | None = None
) -> EnclaveOut:
    return EnclaveOut(**web.portal.describe_enclave(e), client_id=client_id, client_secret=secret)


@router.put("/api/admin/enclaves/{name}", response_model=EnclaveOut)
def api_register(web: WebDep, name: str, body: EnclaveIn, actor: Admin) -> EnclaveOut:
    if body.client is not None and body.client.tier is not None:
        raise InvalidInputError("An enclave's hub demands its enclave's tier; omit client.tier.")
    reg = web.portal.register_enclave(
        name=name,
        tier=body.tier,
        display_name=body.display_name,
        members=[(m.user, m.role) for m in body.members],
        networks=body.networks,
        hub_url=body.hub_url,
        client_id=body.client.client_id if body.client else None,
        redirect_uris=body.client.redirect_uris if body.client else [],
        post_logout_redirect_uris=body.client.post_logout_redirect_uris if body.client else [],
        rotate_secret=body.client.rotate_secret if body.client else False,
        actor=actor,
    )
    return enclave_out(
        web, reg.enclave, reg.client.client_id if reg.client else None, reg.client_secret
    )


@router.get("/api/admin/enclaves", response_model=list[EnclaveOut])
def api_enclaves(web: WebDep, actor: Admin) -> list[EnclaveOut]:
    return [enclave_out(web, e) for e in web.store.list_enclaves()]


@router.get("/api/admin/enclaves/{name}", response_model=EnclaveOut)
def api_enclave(
    web: WebDep,
    name: Annotated[str, Path(max_length=63)],
    actor: Admin,
    client_id: Annotated[str | None, Query(max_length=128)] = None,
) -> EnclaveOut:
    """One enclave's registration; with ``client_id``, that client's redirect URIs when it
    is this enclave's hub (never its secret), so a caller can tell whether it changed."""
    e = web.store.get_enclave(name=name)
    if e is None:
        raise NotFoundError(f"No enclave named {name!r}.")
    c = web.store.get_client(client_id=client_id) if client_id else None
    if c is None or c.enclave != name:
        return enclave_out(web, e)
    return EnclaveOut(
        **web.portal.describe_enclave(e), client_id=c.client_id, redirect_uris=c.redirect_uris
    )


@router.delete("/api/admin/enclaves/{name}", status_code=204)
def api_remove(web: WebDep, name: str, actor: Admin) -> Response:
    web.portal.remove_enclave(name=name, actor=actor)
    return Response(status_code=204)


@router.post("/api/admin/clients", response_model=ClientOut, status_code=201)
def api_client(web: WebDep, body: ClientIn, actor: Admin) -> ClientOut:
    secret = web.portal.register_client(
        client_id=body.client_id,
        redirect_uris=body.redirect_uris,
        post_logout_redirect_uris=body.post_logout_redirect_uris,
        tier=body.tier,
        actor=actor,
    )
    return ClientOut(client_id=body.client_id, client_secret=secret)


def known_user(web: Web, *, username: str, actor: str, path: str) -> User:
    """The user named ``username``; an unknown name is refused (404) and audited."""
    try:
        return web.portal.user(username)
    except NotFoundError:
        web.audit(
            action="web.request.rejected",
            actor=actor,
            outcome="failure",
            details={"path": path[:256], "field": "username", "reason": "no such user"},
        )
        raise


@router.get("/api/admin/sessions", response_model=list[SessionOut])
def api_sessions(
    web: WebDep, actor: Admin, username: Annotated[str | None, Query(max_length=128)] = None
) -> list[SessionOut]:
    """The active signed-in sessions; with ``username``, only that user's."""
    user_id = None
    if username is not None:
        user_id = known_user(web, username=username, actor=actor, path="/api/admin/sessions").id
    return [
        SessionOut(
            session=r.id_hash[:16],
            user_id=r.user_id,
            client_ip=r.client_ip,
            created_at=r.created_at,
            last_seen=r.last_seen,
        )
        for r in web.store.list_sessions(user_id=user_id)
    ]


@router.delete("/api/admin/users/{username}/sessions", response_model=SessionsEnded)
def api_end_user_sessions(
    web: WebDep,
    username: Annotated[str, Path(min_length=1, max_length=128)],
    actor: Admin,
    reason: Annotated[str, Query(min_length=1, max_length=128)] = "revoked by an administrator",
) -> SessionsEnded:
    """End every active session of one user (their access tokens die with them); each
    ended session is audited as ``session.ended`` with ``reason``."""
    u = known_user(web, username=username, actor=actor, path="/api/admin/users/{username}/sessions")
    n = web.portal.revoke_sessions(user_id=u.id, actor=actor, reason=reason)
    return SessionsEnded(username=u.username, sessions_ended=n)


@router.delete("/api/admin/sessions/{session}", status_code=204)
def api_revoke_session(web: WebDep, session: str, actor: Admin) -> Response:
    matches = (
        [r for r in web.store.list_sessions() if r.id_hash.startswith(session)]
        if len(session) >= 8
        else []
    )
    if len(matches) != 1:
        raise NotFoundError("No single active session starts with that id.")
    web.store.end_session(id_hash=matches[0].id_hash, now=web.portal.clock())
    web.audit(
        action="session.ended",
        actor=actor,
        outcome="success",
        details={"session": matches[0].id_hash[:16], "reason": "revoked by officer"},
    )
    return Response(status_code=204)


@router.post("/api/admin/keys/rotate")
def api_rotate(web: WebDep, actor: Admin) -> dict[str, str]:
    return {"kid": rotate_signing_key(portal=web.portal, actor=actor).kid}


# The token endpoint is the hottest route: match it first (paths do not overlap).
