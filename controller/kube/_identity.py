"""The Enclave's registration with the portal, and its members' sessions.

Called by the reconciler (``_reconcile.py``). Steps of ``sync_registration``:

1. ``desired_registration``: what the portal must hold (tier, display name, members,
   source networks, the hub's URL and OIDC client ``hub-<name>`` whose one redirect
   URI is ``https://<name>.<base_domain>/hub/oauth_callback``): pure.
2. Read the portal's registration (``GET /api/admin/enclaves/{name}``) and whether the
   enclave namespace's ``hub-secret`` Secret holds the client secret.
3. Both as wanted: nothing is written (a settled enclave costs the portal one read).
4. Otherwise ``PUT`` the registration; a new client secret is asked for only when the
   Secret has none, and is written to ``hub-secret`` (``OAUTH_CLIENT_ID``,
   ``OAUTH_CLIENT_SECRET``, and, made once and kept, the proxy's
   ``CONFIGPROXY_AUTH_TOKEN``, the hub's ``JUPYTERHUB_CRYPT_KEY`` and
   ``JPY_COOKIE_SECRET``). The secret never reaches the status, an Event or a log line.

``end_member_sessions`` ends every portal session of the members (the portal audits
each as ``session.ended`` with the reason). Every failure of the portal is a
:class:`PortalUnavailableError` whose message names the portal, never the token.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from controller.portal_admin import PortalAdmin, PortalAdminError

from ._apply import SERVER_SIDE_APPLY, server_message
from ._lifecycle import PortalUnavailableError
from ._objects import HUB_SECRET, Owner, _meta, hub_host, namespace_name
from ._settings import RenderSettings
from ._spec import Enclave
from .errors import ClusterError

__all__ = [
    "Registration",
    "desired_registration",
    "end_member_sessions",
    "hub_client_id",
    "remove_registration",
    "sync_registration",
]


@dataclass(frozen=True, kw_only=True)
class Registration:
    """What ``sync_registration`` found or did; ``written``: the portal was written to."""

    written: bool
    message: str


def hub_client_id(enclave: Enclave) -> str:
    return f"hub-{enclave.name}"


def desired_registration(*, enclave: Enclave, settings: RenderSettings) -> dict[str, Any]:
    """Step 1: the body of ``PUT /api/admin/enclaves/{name}`` (without ``rotate_secret``)."""
    public = f"https://{hub_host(enclave, settings)}"
    return {
        "tier": enclave.tier,
        "display_name": enclave.display_name,
        "members": [{"user": m.user, "role": m.role} for m in enclave.members],
        "networks": list(enclave.access_networks),
        "hub_url": f"{public}/",
        "client": {
            "client_id": hub_client_id(enclave),
            "redirect_uris": [f"{public}/hub/oauth_callback"],
        },
    }


def _matches(live: Mapping[str, Any] | None, wanted: Mapping[str, Any], name: str) -> bool:
    """Whether the portal's registration already is ``wanted`` (names compared as the
    portal stores them: trimmed and lower-cased)."""
    if live is None:
        return False

    def members(items: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
        return sorted((str(m["user"]).strip().lower(), str(m["role"])) for m in items)

    return bool(
        live.get("tier") == wanted["tier"]
        and live.get("display_name") == (wanted["display_name"] or name)
        and members(live.get("members") or []) == members(wanted["members"])
        and list(live.get("networks") or []) == wanted["networks"]
        and live.get("hub_url") == wanted["hub_url"]
        and live.get("client_id") == wanted["client"]["client_id"]
        and list(live.get("redirect_uris") or []) == wanted["client"]["redirect_uris"]
    )


def _read_secret(api_client: Any, namespace: str) -> dict[str, str]:
    try:
        found = client.CoreV1Api(api_client).read_namespaced_secret(HUB_SECRET, namespace)
    except client.ApiException as e:
        if e.status == 404:
            return {}
        raise ClusterError(f"reading Secret {namespace}/{HUB_SECRET}: {server_message(e)}") from e
    return {str(k): str(v) for k, v in (found.data or {}).items()}


def _write_secret(
    api_client: Any, enclave: Enclave, owner: Owner, data: Mapping[str, str], client_secret: str
) -> None:
    """Server-side apply ``hub-secret`` with every key it holds (base64 values)."""

    def b64(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(enclave, owner, name=HUB_SECRET, component="hub"),
        "type": "Opaque",
        "data": {
            "OAUTH_CLIENT_ID": b64(hub_client_id(enclave)),
            "OAUTH_CLIENT_SECRET": b64(client_secret),
            # made once and kept: the proxy's token, the key of the hub's encrypted
            # auth state and its cookie secret (rotating them would end every session)
            **{
                key: data.get(key) or b64(secrets.token_hex(32))
                for key in ("CONFIGPROXY_AUTH_TOKEN", "JUPYTERHUB_CRYPT_KEY", "JPY_COOKIE_SECRET")
            },
        },
    }
    ns = namespace_name(enclave)
    try:
        client.CoreV1Api(api_client).patch_namespaced_secret(
            HUB_SECRET, ns, body, **SERVER_SIDE_APPLY
        )
    except client.ApiException as e:
        raise ClusterError(f"writing Secret {ns}/{HUB_SECRET}: {server_message(e)}") from e


def _unavailable(
    portal: PortalAdmin, doing: str, error: PortalAdminError
) -> PortalUnavailableError:
    return PortalUnavailableError(f"{doing} at the portal {portal.url} failed: {error}")


def sync_registration(
    *,
    api_client: Any,
    portal: PortalAdmin,
    enclave: Enclave,
    settings: RenderSettings,
    owner_uid: str,
) -> Registration:
    """Steps 1-4 of the module docstring; raises :class:`PortalUnavailableError` or
    :class:`ClusterError`, having written nothing half (a secret issued but not stored
    is replaced by a new one next time)."""
    wanted = desired_registration(enclave=enclave, settings=settings)  # 1.
    client_id = hub_client_id(enclave)
    try:  # 2.
        live = portal.enclave(name=enclave.name, client_id=client_id)
    except PortalAdminError as e:
        raise _unavailable(portal, "reading the registration", e) from e
    stored = _read_secret(api_client, namespace_name(enclave))
    has_secret = bool(stored.get("OAUTH_CLIENT_SECRET"))
    summary = (
        f"registered with the portal: {len(enclave.members)} member(s), "
        f"{len(enclave.access_networks)} source network(s), OIDC client {client_id}"
    )
    if has_secret and _matches(live, wanted, enclave.name):  # 3.
        return Registration(written=False, message=summary)
    body = {**wanted, "client": {**wanted["client"], "rotate_secret": not has_secret}}
    try:  # 4.
        answer = portal.register_enclave(name=enclave.name, registration=body)
    except PortalAdminError as e:
        raise _unavailable(portal, "registering the enclave", e) from e
    issued = answer.get("client_secret")
    if issued:
        _write_secret(api_client, enclave, Owner(name=enclave.name, uid=owner_uid), stored, issued)
    elif not has_secret:
        raise PortalUnavailableError(
            f"the portal {portal.url} issued no secret for client {client_id}"
        )
    return Registration(written=True, message=f"{summary} (updated)")


def remove_registration(*, portal: PortalAdmin, enclave: Enclave) -> None:
    """``DELETE /api/admin/enclaves/{name}`` (absent is fine): its members' tokens end."""
    try:
        portal.remove_enclave(name=enclave.name)
    except PortalAdminError as e:
        raise _unavailable(portal, "removing the registration", e) from e


def end_member_sessions(*, portal: PortalAdmin, enclave: Enclave, reason: str) -> int:
    """End every portal session of the enclave's members; how many were ended."""
    ended = 0
    for member in enclave.members:
        try:
            ended += portal.end_sessions(username=member.user, reason=reason)
        except PortalAdminError as e:
            raise _unavailable(portal, "ending the members' sessions", e) from e
    return ended
