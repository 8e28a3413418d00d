"""``enclave audit serve`` and ``enclave audit token ...`` (registered by the audit group).

Bad input exits 2 with one sentence on stderr (raised as ``click.UsageError`` /
``click.BadParameter``; click does the exiting, this module never calls ``exit``).
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from .tokens import TokenRecord, TokenStore

__all__ = ["serve", "token"]

_OFFICER_ENV = "ENCLAVE_AUDIT_OFFICER_TOKEN_FILE"
_TOKENS_ENV = "ENCLAVE_AUDIT_TOKENS_FILE"


F = TypeVar("F", bound=Callable[..., Any])


def _limit(flag: str, default: int, help: str, *, least: int = 1) -> Callable[[F], F]:
    """An integer limit of intake (issue #12, item 3), with its default shown."""
    return click.option(
        flag, default=default, show_default=True, type=click.IntRange(min=least), help=help
    )


@click.command("serve")
@click.option("--store", "store_url", required=True, help="sqlite:///path.db or postgresql://...")
@click.option(
    "--key",
    "key_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="ENCLAVE_AUDIT_KEY_FILE",
    help="checkpoint signing key file (from `enclave audit keygen`)",
)
@click.option(
    "--tokens",
    "tokens_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=_TOKENS_ENV,
    required=True,
    help="intake token file (managed with `enclave audit token ...`)",
)
@click.option(
    "--officer-token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=_OFFICER_ENV,
    default=None,
    help=f"file holding the bootstrap officer token (or ${_OFFICER_ENV}); "
    "without it every officer read is refused",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="where the Prometheus listener binds (keep it off the network workspaces reach)",
)
@click.option(
    "--metrics-port",
    default=None,
    type=click.IntRange(1, 65535),
    help="serve GET /metrics on this port, a listener of its own [default: no metrics]",
)
@_limit("--max-body-kib", 4096, "most KiB in one intake request body (larger: 413)", least=64)
@_limit(
    "--max-concurrent-bodies",
    32,
    "intake requests whose bodies are held at once (beyond: 503); "
    "one token may hold a quarter of them",
)
@_limit(
    "--token-events-per-minute",
    60_000,
    "events one intake token may append per minute (beyond: 429 + Retry-After)",
)
@_limit(
    "--token-kib-per-minute",
    65536,
    "KiB of request bodies one intake token may send per minute (beyond: 429)",
)
@_limit(
    "--min-free-mib",
    1024,
    "below this many MiB free beside a SQLite store, intake takes only the portal's "
    "and the controller's events (others: 503); 0: no floor",
    least=0,
)
@click.option(
    "--checkpoint-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="seconds between checkpoints while the tree grows (0: on demand only)",
)
@click.option(
    "--verify-interval",
    default=86400.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="seconds between whole-log verifications the service runs on its own, recorded "
    "and exported as enclave_audit_scheduled_verifications_total{result} (0: never)",
)
@click.option(
    "--checkpoint-export",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="also write every new checkpoint to this file (atomically), for witnesses",
)
@click.option(
    "--max-pending-batches",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="intake batches waiting for the writer before answering 503 + Retry-After",
)
@click.option(
    "--max-pending-per-token",
    default=None,
    type=click.IntRange(min=1),
    help="of those, most from one intake token before it alone gets 503 "
    "[default: a quarter of --max-pending-batches]",
)
@click.option("--oidc-issuer", default=None, help="the portal's issuer URL (officer sign-in)")
@click.option("--oidc-client-id", default=None, help="this service's client id at the portal")
@click.option(
    "--oidc-client-secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="file holding the client secret printed by `enclave clients register` (chmod 600)",
)
@click.option(
    "--oidc-redirect-uri",
    default=None,
    help="the exact redirect URI registered at the portal, ending in /ui/oidc/callback",
)
@click.option(
    "--oidc-min-tier",
    default="nbdc-high",
    show_default=True,
    help="the tier whose login rules the officer's portal sign-in must satisfy",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="CIDR of a reverse proxy whose X-Forwarded-For is believed (repeatable); "
    "without it the TCP peer is the client address",
)
def serve(
    *,
    store_url: str,
    key_path: Path | None,
    tokens_path: Path,
    officer_token_file: Path | None,
    host: str,
    port: int,
    metrics_host: str,
    metrics_port: int | None,
    max_body_kib: int,
    max_concurrent_bodies: int,
    token_events_per_minute: int,
    token_kib_per_minute: int,
    min_free_mib: int,
    checkpoint_interval: float,
    verify_interval: float,
    checkpoint_export: Path | None,
    max_pending_batches: int,
    max_pending_per_token: int | None,
    oidc_issuer: str | None,
    oidc_client_id: str | None,
    oidc_client_secret_file: Path | None,
    oidc_redirect_uri: str | None,
    oidc_min_tier: str,
    trusted_proxies: tuple[str, ...],
) -> None:
    """Run the audit service: intake API, officer read API and UI, proofs; metrics on a
    listener of their own."""
    from policies import parse_proxies

    from .errors import AuditError
    from .log import open_log
    from .server import create_app
    from .service import ServiceSettings
    from .tokens import TokenError, TokenStore

    try:
        parse_proxies(trusted_proxies)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--trusted-proxy") from None

    if officer_token_file is not None:
        _check_officer_file(officer_token_file)
    oidc = _oidc_config(
        issuer=oidc_issuer,
        client_id=oidc_client_id,
        secret_file=oidc_client_secret_file,
        redirect_uri=oidc_redirect_uri,
        min_tier=oidc_min_tier,
    )
    try:
        tokens = TokenStore(path=tokens_path)
    except TokenError as e:
        raise click.BadParameter(str(e), param_hint="--tokens") from None
    try:
        log = open_log(store_url, signer_key_path=key_path)
    except AuditError as e:
        raise click.UsageError(str(e)) from None
    if officer_token_file is None and oidc is None:
        logging.getLogger("audit.service").warning(
            "neither --oidc-issuer nor an officer token file: the read API and the officer "
            "UI refuse everyone"
        )
    settings = ServiceSettings(
        checkpoint_interval_seconds=checkpoint_interval,
        verify_interval_seconds=verify_interval,
        checkpoint_export_path=checkpoint_export,
        max_pending_batches=max_pending_batches,
        max_pending_batches_per_token=max_pending_per_token,
        trusted_proxies=trusted_proxies,
        max_body_bytes=max_body_kib * 1024,
        max_concurrent_bodies=max_concurrent_bodies,
        token_events_per_minute=token_events_per_minute,
        token_bytes_per_minute=token_kib_per_minute * 1024,
        min_free_bytes=min_free_mib * 1024 * 1024,
    )
    app = create_app(
        log=log,
        tokens=tokens,
        officer_token_file=officer_token_file,
        settings=settings,
        oidc=oidc,
    )
    try:
        _run(app, host=host, port=port, metrics_host=metrics_host, metrics_port=metrics_port)
    finally:
        log.close()


def _check_officer_file(path: Path) -> None:
    """Refuse, in one sentence, an officer token file that is missing or unsafe."""
    from .service._officer import Officers

    if not path.is_file():
        raise click.BadParameter(f"{path} does not exist", param_hint="--officer-token-file")
    problem = Officers.check_file(path)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--officer-token-file")


def _run(app: Any, *, host: str, port: int, metrics_host: str, metrics_port: int | None) -> None:
    """Serve ``app``, and the metrics on a listener of their own when a port is given."""
    import asyncio

    import uvicorn

    from .service import metrics_app

    quiet: dict[str, Any] = {"log_level": "warning", "access_log": False}
    main = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **quiet))

    async def both(metrics: uvicorn.Server) -> None:
        # the metrics server captures the signals last: a SIGTERM stops it, then is
        # raised again for the main server, which drains intake and stops
        task = asyncio.create_task(metrics.serve())
        try:
            await main.serve()
        finally:
            metrics.should_exit = True
            await task

    if metrics_port is None:
        main.run()
        return
    mapp = metrics_app(app.state.audit.metrics)
    asyncio.run(
        both(
            uvicorn.Server(
                uvicorn.Config(mapp, host=metrics_host, port=metrics_port, lifespan="off", **quiet)
            )
        )
    )


def _oidc_config(
    *,
    issuer: str | None,
    client_id: str | None,
    secret_file: Path | None,
    redirect_uri: str | None,
    min_tier: str,
) -> Any:
    """The relying-party settings, or None when --oidc-issuer is not given."""
    from policies import TIER_IDS

    from .service._oidc import OidcConfig

    given = {
        "--oidc-client-id": client_id,
        "--oidc-client-secret-file": secret_file,
        "--oidc-redirect-uri": redirect_uri,
    }
    if issuer is None:
        extra = [k for k, v in given.items() if v is not None]
        if extra:
            raise click.UsageError(f"{extra[0]} needs --oidc-issuer")
        return None
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise click.UsageError(f"--oidc-issuer needs {', '.join(missing)}")
    if min_tier not in TIER_IDS:
        raise click.BadParameter(
            f"unknown tier {min_tier!r}; one of {', '.join(TIER_IDS)}", param_hint="--oidc-min-tier"
        )
    if secret_file is None or client_id is None or redirect_uri is None:  # checked above
        raise click.UsageError("--oidc-issuer needs its companion options")
    problem = OidcConfig.check_secret_file(secret_file)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--oidc-client-secret-file")
    if not redirect_uri.rstrip("/").endswith("/ui/oidc/callback"):
        raise click.BadParameter(
            "the redirect URI must end in /ui/oidc/callback", param_hint="--oidc-redirect-uri"
        )
    try:
        return OidcConfig(
            issuer=issuer,
            client_id=client_id,
            client_secret_file=secret_file,
            redirect_uri=redirect_uri,
            min_tier=min_tier,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None


T = TypeVar("T")


@click.group("token")
def token() -> None:
    """Intake tokens, one source each: issue, list, rotate, revoke."""


_tokens_opt = click.option(
    "--tokens",
    "tokens_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=_TOKENS_ENV,
    required=True,
    help="the token file the service reads",
)
_store_opt = click.option(
    "--store",
    "store_url",
    required=True,
    envvar="ENCLAVE_AUDIT_STORE",
    help="the audit store that records the change (the event is written before the "
    "token file changes); env ENCLAVE_AUDIT_STORE",
)


class _Recorder:
    """Appends one CLI event per token change to the audit store, opened up front so
    that an unreachable store refuses the command before anything changes."""

    def __init__(self, store_url: str) -> None:
        from .errors import AuditError
        from .log import open_log

        try:
            self._log = open_log(store_url)
        except AuditError as e:
            raise click.BadParameter(
                f"cannot open the audit store, nothing was changed: {e}", param_hint="--store"
            ) from None

    def close(self) -> None:
        self._log.close()

    def __call__(self, action: str, details: dict[str, str], enclave: str | None) -> None:
        from ._events import Event

        self._log.append(
            [
                Event.new(
                    source="cli",
                    actor=os.environ.get("SUDO_USER") or getpass.getuser(),
                    action=action,
                    outcome="success",
                    enclave=enclave,
                    details=details,
                )
            ]
        )


def _store(path: Path) -> TokenStore:
    from .tokens import TokenError, TokenStore

    try:
        return TokenStore(path=path)
    except TokenError as e:
        raise click.BadParameter(str(e), param_hint="--tokens") from None


def _issued(rec: _Recorder) -> Callable[[TokenRecord], None]:
    """What records a token issued by ``issue`` or ``rotate``: ``audit.token.issued``."""
    return lambda r: rec(
        "audit.token.issued", {"token_id": r.id, "for_source": r.source}, r.enclave
    )


def _change(store_url: str, apply: Callable[[_Recorder], T], *, param_hint: str) -> T:
    """Run one token change with its audit event; one sentence on any failure."""
    from .errors import AuditError
    from .tokens import TokenError

    recorder = _Recorder(store_url)
    try:
        return apply(recorder)
    except TokenError as e:
        raise click.BadParameter(str(e), param_hint=param_hint) from None
    except AuditError as e:
        raise click.ClickException(
            f"the change could not be recorded, so it was not made: {e}"
        ) from None
    except OSError as e:
        raise click.ClickException(
            f"the change was recorded but the token file could not be written: {e}; "
            "check the file and run the command again"
        ) from None
    finally:
        recorder.close()


@token.command("issue")
@_tokens_opt
@_store_opt
@click.option(
    "--source",
    required=True,
    help="portal | hub | workspace | controller | cli (the service writes source audit itself)",
)
@click.option("--label", default="", help="a note for operators, e.g. the host")
@click.option(
    "--enclave",
    default=None,
    help="only this enclave's events (required for a project's hub or workspace)",
)
def issue(
    *, tokens_path: Path, store_url: str, source: str, label: str, enclave: str | None
) -> None:
    """Issue a token; it is printed once, on stdout, and only its hash is kept."""
    from .tokens import SOURCES, scope_problem

    problem = scope_problem(source=source, enclave=enclave)
    if problem:
        hint = "--enclave" if source in SOURCES else "--source"
        raise click.BadParameter(problem, param_hint=hint)
    store = _store(tokens_path)
    issued = _change(
        store_url,
        lambda rec: store.issue(source=source, label=label, enclave=enclave, record=_issued(rec)),
        param_hint="--source",
    )
    click.echo(issued.token)
    scope = f" of enclave {enclave}" if enclave else ""
    click.echo(f"token id {issued.record.id} for source {source}{scope}", err=True)


@token.command("rotate")
@_tokens_opt
@_store_opt
@click.argument("token_id")
@click.option(
    "--grace",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="seconds the old token stays valid",
)
def rotate(*, tokens_path: Path, store_url: str, token_id: str, grace: float) -> None:
    """Issue a successor for the same source; the old token expires after --grace."""
    store = _store(tokens_path)
    issued = _change(
        store_url,
        lambda rec: store.rotate(token_id=token_id, grace_seconds=grace, record=_issued(rec)),
        param_hint="TOKEN_ID",
    )
    click.echo(issued.token)
    click.echo(f"token id {issued.record.id} replaces {token_id} (grace {grace:g} s)", err=True)


@token.command("revoke")
@_tokens_opt
@_store_opt
@click.argument("token_id")
@click.option("--reason", default="", help="why, for the audit record")
def revoke(*, tokens_path: Path, store_url: str, token_id: str, reason: str) -> None:
    """Revoke: the service refuses the token within a quarter of a second."""
    store = _store(tokens_path)
    details = {"token_id": token_id}
    if reason:
        details["reason"] = reason
    _change(
        store_url,
        lambda rec: store.revoke(
            token_id=token_id, record=lambda r: rec("audit.token.revoked", details, r.enclave)
        ),
        param_hint="TOKEN_ID",
    )
    click.echo(f"revoked {token_id}", err=True)


@token.command("list")
@_tokens_opt
def list_tokens(*, tokens_path: Path) -> None:
    """Token ids, sources and states (never the tokens)."""
    import time

    store = _store(tokens_path)
    now = time.time()
    for r in store.list():
        state = "active" if r.active(now=now) else ("revoked" if r.revoked else "expired")
        click.echo(f"{r.id}\t{r.source}\t{state}\t{r.label}\t{r.enclave or '*'}")
