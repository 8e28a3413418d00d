"""``enclave controller run``: ``--local DIR`` runs the local backend, ``--kube`` the operator.

The ``run`` command here wraps the Kubernetes backend's own (same options) and adds
``--local`` with the local backend's options. Bad input: one sentence, exit 2.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click

from controller.kube.cli import run as kube_run

__all__ = ["controller"]

_REPO = Path(__file__).resolve().parents[2]


def _local_options(command: Any) -> Any:
    options = [
        click.option(
            "--local",
            "local_dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Run the local backend over the Enclave YAML files in this directory.",
        ),
        click.option(
            "--state",
            type=click.Path(file_okay=False, path_type=Path),
            envvar="ENCLAVE_LOCAL_STATE",
            default=Path(".state/local"),
            show_default=True,
            help="(--local) Each hub's configuration, secrets, database and logs "
            "(env: ENCLAVE_LOCAL_STATE).",
        ),
        click.option(
            "--portal-url",
            envvar="ENCLAVE_LOCAL_PORTAL_URL",
            default="http://localhost:8000",
            show_default=True,
            help="(--local) The portal: OIDC issuer and admin API (env: ENCLAVE_LOCAL_PORTAL_URL).",
        ),
        click.option(
            "--portal-admin-token-file",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="ENCLAVE_LOCAL_PORTAL_ADMIN_TOKEN_FILE",
            help="(--local) File (mode 0600) with the portal's admin API token.",
        ),
        click.option(
            "--audit-url",
            envvar="ENCLAVE_LOCAL_AUDIT_URL",
            default="http://127.0.0.1:8700",
            show_default=True,
            help="(--local) The audit service's intake.",
        ),
        click.option(
            "--audit-tokens",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="ENCLAVE_LOCAL_AUDIT_TOKENS",
            help="(--local) The audit service's token file: each enclave's intake tokens "
            "are issued into it.",
        ),
        click.option(
            "--audit-store",
            envvar="ENCLAVE_LOCAL_AUDIT_STORE",
            help="(--local) The audit store that records each token issued.",
        ),
        click.option(
            "--datasets",
            type=click.Path(file_okay=False, path_type=Path),
            envvar="ENCLAVE_LOCAL_DATASETS",
            default=None,
            help="(--local) Directory holding one subdirectory per dataset "
            "(its spec.datasets[].persistentVolume).",
        ),
        click.option(
            "--spawner-class",
            envvar="ENCLAVE_LOCAL_SPAWNER_CLASS",
            default=None,
            help="(--local) The hubs' spawner (default: the audited LocalProcessSpawner).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _fail(message: str) -> None:
    click.echo(f"enclave: {message}", err=True)
    sys.exit(2)


@click.group()
def controller() -> None:
    """Run the controller that keeps each Enclave's objects as its tier demands."""


@controller.command(
    "run", params=list(kube_run.params), help=(kube_run.help or "") + " --local DIR: see below."
)
@_local_options
@click.pass_context
def run(ctx: click.Context, **options: Any) -> None:
    """Run the reconciler until interrupted (SIGINT or SIGTERM)."""
    local_dir: Path | None = options.pop("local_dir")
    local_keys = (
        "state",
        "portal_url",
        "portal_admin_token_file",
        "audit_url",
        "audit_tokens",
        "audit_store",
        "datasets",
        "spawner_class",
    )
    local = {k: options.pop(k) for k in local_keys}
    if local_dir is None:
        if not options.get("kube"):
            _fail("give --local DIR (Enclave files on this host) or --kube (a cluster)")
        assert kube_run.callback is not None
        ctx.invoke(kube_run.callback, **options)
        return
    if options.get("kube"):
        _fail("give either --local DIR or --kube, not both")
    for key in ("portal_admin_token_file", "audit_tokens", "audit_store"):
        if local[key] is None:
            _fail(f"--local needs --{key.replace('_', '-')}")
    _run_local(local_dir, **local)


def _run_local(local_dir: Path, **o: Any) -> None:
    from ._backend import LocalSettings, run_local
    from .errors import SetupError

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    settings = LocalSettings(
        enclaves_dir=local_dir.resolve(),
        state_dir=o["state"].resolve(),
        portal_url=o["portal_url"].rstrip("/"),
        portal_admin_token_file=o["portal_admin_token_file"],
        audit_url=o["audit_url"].rstrip("/"),
        audit_tokens_file=o["audit_tokens"],
        audit_store=o["audit_store"],
        proxy_command=(str(_REPO / "node_modules" / ".bin" / "configurable-http-proxy"),),
        datasets_dir=o["datasets"].resolve() if o["datasets"] else None,
        **({"spawner_class": o["spawner_class"]} if o["spawner_class"] else {}),
    )

    def say(line: str) -> None:
        click.echo(f"enclave controller: {line}", err=True)

    try:
        run_local(settings=settings, say=say, stop=lambda: stopping)
    except SetupError as e:
        _fail(str(e))
