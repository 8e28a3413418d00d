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


_DIR = click.Path(file_okay=False, path_type=Path)
_FILE = click.Path(dir_okay=False, path_type=Path)

#: The local backend's options: name, type, default, help (each also ENCLAVE_LOCAL_<NAME>).
_LOCAL_OPTIONS: tuple[tuple[str, click.ParamType[Any] | None, Any, str], ...] = (
    ("state", _DIR, Path(".state/local"), "Each hub's configuration, secrets, database, logs."),
    ("portal-url", None, "http://localhost:8000", "The portal: OIDC issuer and admin API."),
    ("portal-admin-token-file", _FILE, None, "File (mode 0600) with the portal's admin token."),
    ("audit-url", None, "http://127.0.0.1:8700", "The audit service's intake."),
    ("audit-tokens", _FILE, None, "The audit service's token file (tokens are issued into it)."),
    ("audit-store", None, None, "The audit store that records each token issued."),
    ("datasets", _DIR, None, "One subdirectory per dataset (its persistentVolume)."),
    ("spawner-class", None, None, "The hubs' spawner (default: the audited sandbox)."),
    ("overlay", _FILE, None, "Operator overlay that tightens tiers, for hubs and workspaces."),
    (
        "proxy",
        click.Choice(["in-process", "configurable-http-proxy"]),
        "in-process",
        "Each hub's proxy and idle culler: in the hub's process, or "
        "configurable-http-proxy (node) and the culler as processes beside it.",
    ),
)


#: Options both backends take (the portal, the audit intake): defined once, by the
#: Kubernetes backend's command; the local backend reads them and applies its defaults.
_SHARED = frozenset(p.name for p in kube_run.params if p.name)


def _local_options(command: Any) -> Any:
    for name, kind, default, text in reversed(_LOCAL_OPTIONS):
        if name.replace("-", "_") in _SHARED:
            continue
        env = "ENCLAVE_LOCAL_" + name.upper().replace("-", "_")
        command = click.option(
            f"--{name}",
            type=kind,
            envvar=env,
            default=default,
            show_default=default is not None,
            help=f"(--local) {text} (env: {env})",
        )(command)
    return click.option(
        "--local",
        "local_dir",
        type=_DIR,
        default=None,
        help="Run the local backend over the Enclave YAML files in this directory.",
    )(command)


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
def run(ctx: click.Context, /, **options: Any) -> None:
    """Run the reconciler until interrupted (SIGINT or SIGTERM)."""
    local_dir: Path | None = options.pop("local_dir")
    local: dict[str, Any] = {}
    for name, _, default, _ in _LOCAL_OPTIONS:
        key = name.replace("-", "_")
        if key in _SHARED:
            value = options.get(key)
            local[key] = value if value is not None else default
        else:
            local[key] = options.pop(key)
    if local_dir is None:
        if not options.get("kube"):
            _fail("give --local DIR (Enclave files on this host) or --kube (a cluster)")
        assert kube_run.callback is not None
        ctx.invoke(kube_run.callback, **options)
        return
    if options.get("kube"):
        _fail("give either --local DIR or --kube, not both")
    for key in options:
        source = ctx.get_parameter_source(key)
        if key not in local and source in (
            click.core.ParameterSource.COMMANDLINE,
            click.core.ParameterSource.ENVIRONMENT,
        ):
            # accepted and ignored would be a setting the operator believes in force
            flag = next(p.opts[0] for p in ctx.command.params if p.name == key)
            _fail(f"{flag} applies to --kube only, not to --local")
    for key in ("portal_admin_token_file", "audit_tokens", "audit_store"):
        if local[key] is None:
            _fail(f"--local needs --{key.replace('_', '-')}")
    _run_local(local_dir, **local)


def _run_local(local_dir: Path, **o: Any) -> None:
    from ._backend import LocalSettings, run_local
    from ._hostfiles import proxy_command
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
        proxy_command=proxy_command(_REPO) if o["proxy"] == "configurable-http-proxy" else (),
        datasets_dir=o["datasets"].resolve() if o["datasets"] else None,
        **({"spawner_class": o["spawner_class"]} if o["spawner_class"] else {}),
        tier_overlay=o["overlay"].resolve() if o["overlay"] else None,
    )

    def say(line: str) -> None:
        click.echo(f"enclave controller: {line}", err=True)

    try:
        run_local(settings=settings, say=say, stop=lambda: stopping)
    except SetupError as e:
        _fail(str(e))
