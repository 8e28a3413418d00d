"""``enclave portal|users|enclaves``: serve the portal and administer it locally.

Commands open the identity store directly (same services as the admin API, so
every action is audited). Secrets never travel in argv: the admin token and the
key ring are read from files; invitation codes and client secrets are printed once.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography.hazmat.primitives import serialization

from audit.files import write_atomic

from ._audit import open_sink
from ._crypto import KeyRing, hash_token
from ._errors import AuthError
from ._portal import Portal, PortalSettings

__all__ = ["portal"]

F = TypeVar("F", bound=Callable[..., Any])


def _common(f: F) -> F:
    opts = [
        click.option(
            "--store",
            "store_url",
            envvar="ENCLAVE_PORTAL_STORE",
            required=True,
            help="Identity store URL: sqlite:///path or postgresql://...",
        ),
        click.option(
            "--key-file",
            envvar="ENCLAVE_PORTAL_KEY_FILE",
            required=True,
            type=click.Path(path_type=Path),
            help="AES-GCM key ring: one kid:base64 per line, the first seals.",
        ),
        click.option(
            "--audit-log",
            envvar="ENCLAVE_PORTAL_AUDIT_LOG",
            required=True,
            help="Where audit events go: the audit service's URL (http[s]://...), an "
            "audit store URL (sqlite:///..., postgresql://...), or unsafe-jsonl:PATH "
            "(development only).",
        ),
        click.option(
            "--audit-token-file",
            envvar="ENCLAVE_PORTAL_AUDIT_TOKEN_FILE",
            type=click.Path(path_type=Path, dir_okay=False),
            help="File holding the portal's intake token (with an audit service URL).",
        ),
        click.option(
            "--audit-spool",
            envvar="ENCLAVE_PORTAL_AUDIT_SPOOL",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Spool file keeping events durable while the audit service is away.",
        ),
    ]

    # The five options become one ``open_portal(**settings)`` argument, so each
    # command says what it does rather than threading the connection through.
    @functools.wraps(f)
    def wrapper(
        *args: Any,
        store_url: str,
        key_file: Path,
        audit_log: str,
        audit_token_file: Path | None,
        audit_spool: Path | None,
        **kwargs: Any,
    ) -> Any:
        opener = functools.partial(
            _open,
            store_url,
            key_file,
            audit_log,
            audit_token_file=audit_token_file,
            audit_spool=audit_spool,
        )
        return f(*args, open_portal=opener, **kwargs)

    g: Any = wrapper
    for o in reversed(opts):
        g = o(g)
    return g  # type: ignore[no-any-return]


def _fail_cleanly(f: F) -> F:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except AuthError as e:
            click.echo(f"error: {e.message}", err=True)
            sys.exit(2)
        except OSError as e:
            click.echo(f"error: {e.strerror or e} ({getattr(e, 'filename', '')}).", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _open(
    store_url: str,
    key_file: Path,
    audit_log: str,
    issuer: str = "https://localhost",
    *,
    audit_token_file: Path | None = None,
    audit_spool: Path | None = None,
    migrate: bool = False,
    **extra: Any,
) -> Portal:
    """The portal the options name; ``migrate`` first applies pending schema steps
    (and leaves them in ``portal.store.migrations_applied``)."""
    if not key_file.exists():
        raise click.UsageError(
            f"Key file {key_file} does not exist; create it with 'enclave portal init-keys'."
        )
    settings = PortalSettings(
        issuer=issuer,
        store_url=store_url,
        key_file=key_file,
        audit_target=audit_log,
        audit_token_file=audit_token_file,
        audit_spool=audit_spool,
        **extra,
    )
    from ._store import open_store

    store = open_store(url=store_url, migrate=migrate)
    try:
        return Portal(settings=settings, sink=_sink(settings), store=store)
    except BaseException:
        store.close()
        raise


def _sink(s: PortalSettings) -> Any:
    return open_sink(s.audit_target, token_file=s.audit_token_file, spool=s.audit_spool)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@click.group()
def portal() -> None:
    """Run the portal (login, enrolment, OIDC provider)."""


def _replace_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) atomically: a temp file in the same
    directory, fsynced, renamed over the old file, then the directory fsynced. The only
    copy of a key ring is never observed truncated or half-written."""
    write_atomic(path, text.encode("utf-8"), mode=0o600)


@portal.command("init-keys")
@click.argument("key_file", type=click.Path(path_type=Path))
@click.option("--kid", default="k1", show_default=True)
@click.option("--rotate", is_flag=True, help="Prepend a new key to an existing ring.")
@_fail_cleanly
def init_keys(key_file: Path, kid: str, rotate: bool) -> None:
    """Create (or rotate) the AES-GCM key ring file (mode 0600)."""
    new = KeyRing.generate(kid=kid)
    if key_file.exists():
        if not rotate:
            raise click.UsageError(f"{key_file} exists; pass --rotate to add a new first key.")
        old = KeyRing.from_file(path=key_file)
        new = KeyRing(keys=(new.keys[0], *old.keys))
    _replace_private(key_file, new.to_text())
    click.echo(f"key ring {key_file}: {', '.join(k for k, _ in new.keys)} (first seals)")


@portal.command("reseal")
@_common
@_fail_cleanly
def reseal(
    open_portal: Callable[..., Portal],
) -> None:
    """Re-encrypt every sealed secret under the first key (after a rotation)."""
    p = open_portal()

    def again(blob: bytes, context: str) -> bytes:
        return p.keyring.seal(
            plaintext=p.keyring.open(sealed=blob, context=context), context=context
        )

    n = p.store.reseal_all(reseal=again)
    p.auditor.record(
        action="admin.keys.resealed", actor=_actor(), outcome="success", details={"count": n}
    )
    click.echo(f"re-sealed {n} secrets")


@portal.command("migrate")
@_common
@_fail_cleanly
def migrate(open_portal: Callable[..., Portal]) -> None:
    """Apply pending identity-store schema steps (take a backup first)."""
    p = open_portal(migrate=True)
    applied, version = p.store.migrations_applied, p.store.schema_version()
    if not applied:
        click.echo(f"identity store already at schema version {version}")
        return
    details: dict[str, Any] = {"version": version, "applied": ",".join(applied)}
    if p.store.migration_notes:
        details["notes"] = "; ".join(p.store.migration_notes)[:4096]
    p.auditor.record(
        action="admin.store.migrated", actor=_actor(), outcome="success", details=details
    )
    click.echo(f"identity store at schema version {version}: applied {', '.join(applied)}")
    for note in p.store.migration_notes:
        click.echo(f"  {note}")


@portal.command("serve")
@_common
@click.option(
    "--issuer",
    required=True,
    help="Public base URL, e.g. https://portal.example (also the WebAuthn origin).",
)
@click.option("--rp-id", default=None, help="WebAuthn RP ID (default: the issuer's host).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--login-tier", default="nbdc-standard", show_default=True)
@click.option(
    "--admin-token-file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="File holding the admin API bearer token (enables /api/admin).",
)
@click.option(
    "--trusted-proxy", multiple=True, help="CIDR whose X-Forwarded-For is believed (repeatable)."
)
@click.option(
    "--biometric-aaguid",
    multiple=True,
    help="AAGUID=amr (fpt, face, iris, retina or vbm) of an authenticator model whose only "
    "user verification is that biometric (repeatable). Needs --attestation-root.",
)
@click.option(
    "--attestation-root",
    multiple=True,
    help="FORMAT=PEM_FILE: trusted attestation root certificate(s) for one attestation "
    "format, e.g. packed=/etc/enclave/vendor-root.pem (repeatable). A key counts as "
    "biometric only when its attestation chains to one of these roots.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes sharing the store (each TOTP step and code is still single-use).",
)
@_fail_cleanly
def serve(
    workers: int,
    open_portal: Callable[..., Portal],
    issuer: str,
    rp_id: str | None,
    host: str,
    port: int,
    login_tier: str,
    admin_token_file: Path | None,
    trusted_proxy: tuple[str, ...],
    biometric_aaguid: tuple[str, ...],
    attestation_root: tuple[str, ...],
) -> None:
    """Serve the portal over HTTP (put TLS in front; HSTS is sent on https)."""
    import urllib.parse

    import uvicorn

    from ._web import create_app

    admin_hash = None
    if admin_token_file is not None:
        if admin_token_file.stat().st_mode & 0o077:
            raise click.UsageError(
                f"The admin token file {admin_token_file} is readable by group or others; "
                "chmod 600 it."
            )
        admin_hash = hash_token(admin_token_file.read_text().strip())
    aaguids, roots = biometric_settings(aaguids=biometric_aaguid, roots=attestation_root)
    p = open_portal(
        issuer=issuer,
        rp_id=rp_id or (urllib.parse.urlparse(issuer).hostname or "localhost"),
        login_tier=login_tier,
        admin_token_hash=admin_hash,
        trusted_proxies=trusted_proxy,
        biometric_aaguids=aaguids,
        attestation_roots=roots,
    )
    common = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "proxy_headers": False,
        "server_header": False,
    }
    if workers == 1:
        uvicorn.run(create_app(portal=p), **common)  # type: ignore[arg-type]
        return
    # Several processes: each builds its own Portal from the same settings. The parent
    # opened the store first, so the schema and the first signing key already exist.
    s = p.settings
    os.environ[_SERVE_ENV] = json.dumps(
        {
            "issuer": s.issuer,
            "store_url": s.store_url,
            "key_file": str(s.key_file),
            "audit_target": s.audit_target,
            "audit_token_file": str(s.audit_token_file) if s.audit_token_file else None,
            "audit_spool": str(s.audit_spool) if s.audit_spool else None,
            "rp_id": s.rp_id,
            "login_tier": s.login_tier,
            "admin_token_hash": s.admin_token_hash,
            "trusted_proxies": list(s.trusted_proxies),
            "biometric_aaguids": dict(s.biometric_aaguids),
            "attestation_roots": {
                fmt: [pem.decode("ascii") for pem in pems]
                for fmt, pems in s.attestation_roots.items()
            },
        }
    )
    p.store.close()
    uvicorn.run("auth._cli:app_from_env", factory=True, workers=workers, **common)  # type: ignore[arg-type]


_SERVE_ENV = "ENCLAVE_PORTAL_SERVE_SETTINGS"
_BIOMETRIC_AMR = ("fpt", "face", "iris", "retina", "vbm")
_AAGUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def biometric_settings(
    *, aaguids: Sequence[str], roots: Sequence[str]
) -> tuple[dict[str, str], dict[str, tuple[bytes, ...]]]:
    """``serve``'s biometric options, checked: (AAGUID -> amr, format -> PEM roots).

    1. Each ``--biometric-aaguid`` is a dashed AAGUID and an RFC 8176 biometric amr.
    2. Each ``--attestation-root`` names a WebAuthn attestation format and a readable
       file of one or more PEM certificates.
    3. An allow-list without any root is refused: no key could ever be attested, so
       biometric tiers (tommo-strong) would stay closed while looking configured.
    """
    from cryptography import x509
    from webauthn.helpers.structs import AttestationFormat

    allow: dict[str, str] = {}
    for item in aaguids:  # 1
        a, sep, amr = item.partition("=")
        if not sep or not _AAGUID.match(a.lower()) or amr not in _BIOMETRIC_AMR:
            raise click.UsageError(
                f"--biometric-aaguid {item[:80]!r}: expected AAGUID=fpt|face|iris|retina|vbm "
                "with a dashed AAGUID (8-4-4-4-12 hex digits)."
            )
        allow[a.lower()] = amr
    pems: dict[str, list[bytes]] = {}
    formats = {f.value for f in AttestationFormat} - {"none"}
    for item in roots:  # 2
        fmt, sep, path = item.partition("=")
        if not sep or fmt not in formats:
            raise click.UsageError(
                f"--attestation-root {item[:80]!r}: expected FORMAT=PEM_FILE with FORMAT one "
                f"of {', '.join(sorted(formats))}."
            )
        try:
            data = Path(path).read_bytes()
            certs = x509.load_pem_x509_certificates(data)
        except OSError as e:
            raise click.UsageError(
                f"--attestation-root {fmt}: cannot read {path}: {e.strerror}."
            ) from None
        except ValueError:
            raise click.UsageError(
                f"--attestation-root {fmt}: {path} holds no PEM certificate."
            ) from None
        pems.setdefault(fmt, []).extend(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    if allow and not pems:  # 3
        raise click.UsageError(
            "--biometric-aaguid needs at least one --attestation-root: without trusted "
            "roots no key's attestation can be verified, so none would count as biometric."
        )
    return allow, {fmt: tuple(v) for fmt, v in pems.items()}


def app_from_env() -> Any:
    """uvicorn's app factory for ``serve --workers N`` (settings handed over by the parent)."""
    from ._web import create_app

    cfg = json.loads(os.environ[_SERVE_ENV])
    settings = PortalSettings(
        issuer=cfg["issuer"],
        store_url=cfg["store_url"],
        key_file=Path(cfg["key_file"]),
        audit_target=cfg["audit_target"],
        audit_token_file=Path(cfg["audit_token_file"]) if cfg["audit_token_file"] else None,
        audit_spool=Path(cfg["audit_spool"]) if cfg["audit_spool"] else None,
        rp_id=cfg["rp_id"],
        login_tier=cfg["login_tier"],
        admin_token_hash=cfg["admin_token_hash"],
        trusted_proxies=tuple(cfg["trusted_proxies"]),
        biometric_aaguids=cfg["biometric_aaguids"],
        attestation_roots={
            fmt: tuple(pem.encode("ascii") for pem in pems)
            for fmt, pems in cfg["attestation_roots"].items()
        },
    )
    return create_app(portal=Portal(settings=settings, sink=_sink(settings)))
