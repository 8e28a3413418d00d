"""The officer's commands: ``enclave users``, ``enclaves`` and ``clients``, over ``Portal``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from ._cli import _actor, _common, _fail_cleanly
from ._portal import Invitation, Portal

__all__ = ["clients", "enclaves", "users"]


def _print_invitation(inv: Invitation) -> None:
    """The one line ``invite`` and ``rebind`` print: who, the single-use code, its expiry."""
    fields = {"username": inv.username, "invitation_code": inv.code}
    click.echo(json.dumps({**fields, "expires_at": int(inv.expires_at)}))


@click.group()
def users() -> None:
    """Portal users: invite, list, disable, approve enrolments, re-bind."""


@users.command("invite")
@_common
@click.argument("username")
@click.option("--display-name", default="")
@click.option("--role", "roles", multiple=True, default=("researcher",), show_default=True)
@click.option("--locale", type=click.Choice(["en", "ja"]), default="en", show_default=True)
@_fail_cleanly
def invite(
    open_portal: Callable[..., Portal],
    username: str,
    display_name: str,
    roles: tuple[str, ...],
    locale: str,
) -> None:
    """Invite USERNAME (not case-sensitive); prints the single-use code once.

    Inviting again before the person accepts prints a new code, cancels the older
    ones and gives the account these roles; an account in use is refused (rebind)."""
    inv = open_portal().invite_user(
        username=username,
        display_name=display_name,
        roles=list(roles),
        locale=locale,
        actor=_actor(),
    )
    _print_invitation(inv)


@users.command("list")
@_common
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def list_users(
    open_portal: Callable[..., Portal],
    as_json: bool,
) -> None:
    """List users and their credentials."""
    p = open_portal()
    rows: list[dict[str, Any]] = []
    for u in p.store.list_users():
        creds = p.store.list_credentials(user_id=u.id)
        rows.append(
            {
                "username": u.username,
                "status": u.status,
                "roles": sorted(u.roles),
                "credentials": [
                    {
                        "id": c.id,
                        "kind": c.kind,
                        "aaguid": c.aaguid,
                        "approved": c.approved,
                        "disabled": c.disabled,
                    }
                    for c in creds
                ],
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        kinds = ", ".join(
            c["kind"]
            + ("" if c["approved"] or c["kind"] == "password" else f" (pending {c['id']})")
            + (" (disabled)" if c["disabled"] else "")
            for c in r["credentials"]
        )
        click.echo(f"{r['username']:<32} {r['status']:<9} {','.join(r['roles']):<20} {kinds}")


@users.command("disable")
@_common
@click.argument("username")
@_fail_cleanly
def disable(
    open_portal: Callable[..., Portal],
    username: str,
) -> None:
    """Disable USERNAME, end all their sessions and cancel any outstanding invitation code."""
    p = open_portal()
    n = p.disable_user(username=username, actor=_actor())
    click.echo(f"disabled {p.user(username).username}; {n} session(s) ended")


@users.command("approve")
@_common
@click.argument("username")
@click.argument("credential_id")
@_fail_cleanly
def approve(
    open_portal: Callable[..., Portal],
    username: str,
    credential_id: str,
) -> None:
    """Approve one of USERNAME's pending credentials, CREDENTIAL_ID from `users list`
    (needed for high and strong tiers). Check each one with the user first."""
    open_portal().approve_credential(username=username, credential_id=credential_id, actor=_actor())
    click.echo(f"approved credential {credential_id} for {username}")


@users.command("rebind")
@_common
@click.argument("username")
@_fail_cleanly
def rebind(
    open_portal: Callable[..., Portal],
    username: str,
) -> None:
    """Officer-assisted recovery: drop USERNAME's factors and print a new invitation code
    (older codes are cancelled)."""
    inv = open_portal().rebind_user(username=username, actor=_actor())
    _print_invitation(inv)


@click.group()
def enclaves() -> None:
    """The enclave registry the portal uses for entry decisions and OIDC clients."""


@enclaves.command("register")
@_common
@click.argument("name")
@click.option("--tier", required=True)
@click.option("--display-name", default="")
@click.option("--member", "members", multiple=True, help="USER or USER=ROLE (repeatable).")
@click.option("--network", "networks", multiple=True, help="Allowed client CIDR (repeatable).")
@click.option("--hub-url", default="")
@click.option("--client-id", default=None)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--post-logout-redirect-uri", "post_logout", multiple=True)
@click.option("--rotate-secret", is_flag=True)
@_fail_cleanly
def register(
    open_portal: Callable[..., Portal],
    name: str,
    tier: str,
    display_name: str,
    members: tuple[str, ...],
    networks: tuple[str, ...],
    hub_url: str,
    client_id: str | None,
    redirect_uris: tuple[str, ...],
    post_logout: tuple[str, ...],
    rotate_secret: bool,
) -> None:
    """Create or replace enclave NAME; prints its OIDC client secret when one is issued."""
    mem = []
    for m in members:
        user, _, role = m.partition("=")
        mem.append((user, role or "researcher"))
    reg = open_portal().register_enclave(
        name=name,
        tier=tier,
        display_name=display_name,
        members=mem,
        networks=list(networks),
        hub_url=hub_url,
        client_id=client_id,
        redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout),
        rotate_secret=rotate_secret,
        actor=_actor(),
    )
    out: dict[str, Any] = {"name": reg.enclave.name, "tier": reg.enclave.tier}
    if reg.client is not None:
        out["client_id"] = reg.client.client_id
    if reg.client_secret is not None:
        out["client_secret"] = reg.client_secret
    click.echo(json.dumps(out))


@enclaves.command("list")
@_common
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def list_enclaves(
    open_portal: Callable[..., Portal],
    as_json: bool,
) -> None:
    """List registered enclaves."""
    p = open_portal()
    rows = [p.describe_enclave(e) for e in p.store.list_enclaves()]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        click.echo(f"{r['name']:<32} {r['tier']:<15} {len(r['members'])} member(s)")


@enclaves.command("remove")
@_common
@click.argument("name")
@_fail_cleanly
def remove(
    open_portal: Callable[..., Portal],
    name: str,
) -> None:
    """Remove enclave NAME, its OIDC client and its members' tokens for it."""
    open_portal().remove_enclave(name=name, actor=_actor())
    click.echo(f"removed {name}")


@click.group()
def clients() -> None:
    """OIDC clients that are not an enclave's hub (the audit UI, later tools)."""


@clients.command("register")
@_common
@click.argument("client_id")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    required=True,
    help="Exact redirect URI (repeatable).",
)
@click.option("--post-logout-redirect-uri", "post_logout", multiple=True)
@click.option(
    "--tier",
    default=None,
    help="The tier the client demands (for the audit UI: its minimum tier, nbdc-high "
    "unless changed there): ID tokens are computed against it, and a sign-in below it is "
    "stepped up or refused. Without it, the portal's login tier.",
)
@_fail_cleanly
def register_client(
    open_portal: Callable[..., Portal],
    client_id: str,
    redirect_uris: tuple[str, ...],
    post_logout: tuple[str, ...],
    tier: str | None,
) -> None:
    """Create or replace OIDC client CLIENT_ID; prints its new client secret once.

    Its ID tokens carry the user's portal roles (claim ``roles``): the audit UI admits
    only holders of the officer role."""
    secret = open_portal().register_client(
        client_id=client_id,
        redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout),
        tier=tier,
        actor=_actor(),
    )
    click.echo(json.dumps({"client_id": client_id, "client_secret": secret}))
