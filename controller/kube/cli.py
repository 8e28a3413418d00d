"""``enclave render``, ``crd``, ``isolation`` and ``controller run``: the Kubernetes backend.

Bad input leaves as one sentence on stderr with exit code 2; nothing is printed
to stdout then, so a pipe into ``kubectl apply`` never receives half a render.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import yaml

from audit.client import AuditClient
from controller.portal_admin import PortalAdmin
from policies import Catalog, CatalogError, PolicyError, load_catalog

from ._lifecycle import AuditRecorder, set_quarantine
from ._live import LiveIsolation, expected_isolation, live_isolation
from ._reconcile import Lifecycle
from ._render import HubConfig, RenderSettings, render_enclave, to_yaml
from ._schema import Problem, enclave_crd
from ._settings import METADATA_ADDRESS
from ._spec import read_enclave_file
from .errors import ClusterError, InvalidEnclaveError

__all__ = ["controller", "crd", "isolation", "quarantine", "render"]


F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, *, code: int = 2) -> NoReturn:
    click.echo(f"enclave: {message}", err=True)
    sys.exit(code)


def _read_settings(path: Path | None) -> RenderSettings:
    if path is None:
        return RenderSettings()
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InvalidEnclaveError(
            source=str(path),
            problems=[
                Problem(field="(file)", message=f"cannot be read as YAML ({type(e).__name__})")
            ],
        ) from None
    return RenderSettings.from_mapping(data, source=str(path))


def _inputs(*, kube: bool) -> Callable[[F], F]:
    """The options every command shares: settings, tier overlay, kubeconfig."""

    def decorate(command: F) -> F:
        options = [
            click.option(
                "--settings",
                "settings_file",
                type=click.Path(dir_okay=False, path_type=Path),
                help="YAML file of render settings (images, domain, ingress, API server "
                "CIDRs); see docs/controller.md.",
            ),
            click.option(
                "--overlay",
                type=click.Path(dir_okay=False, path_type=Path),
                envvar="ENCLAVE_TIER_OVERLAY",
                help="Operator overlay that tightens tiers (env: ENCLAVE_TIER_OVERLAY); "
                "the hubs' workspaces load it too, from the hub-config ConfigMap.",
            ),
        ]
        if kube:
            options.append(
                click.option(
                    "--kubeconfig",
                    type=click.Path(exists=True, dir_okay=False, path_type=Path),
                    envvar="KUBECONFIG",
                    help="The cluster and the credentials to use (env: KUBECONFIG; "
                    "default: ~/.kube/config).",
                )
            )
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@dataclass(frozen=True, kw_only=True)
class _Inputs:
    settings: RenderSettings
    catalog: Catalog
    hub_config: HubConfig
    api_client: Any


def _load_inputs(
    *,
    settings_file: Path | None,
    overlay: Path | None,
    kube: bool = False,
    kubeconfig: Path | None = None,
) -> _Inputs:
    """Read every shared input, or leave with exit 2 naming the one that was wrong."""
    from kubernetes import config

    try:
        settings = _read_settings(settings_file)
        catalog = load_catalog(overlay=overlay)
        # the overlay as the catalog was loaded from it: the workspaces get the same text
        hub_config = HubConfig(tier_overlay=_overlay_text(overlay))
        api_client = (
            config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None
            )
            if kube
            else None
        )
    except (InvalidEnclaveError, CatalogError, PolicyError) as e:
        _fail(str(e))
    except config.ConfigException as e:
        _fail(f"cannot load the kubeconfig: {e}")
    return _Inputs(settings=settings, catalog=catalog, hub_config=hub_config, api_client=api_client)


def _overlay_text(overlay: Path | None) -> str | None:
    if overlay is None:
        return None
    try:
        return overlay.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogError(
            f"the tier overlay {overlay} cannot be read ({type(e).__name__})"
        ) from None


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_inputs(kube=False)
def render(file: Path, settings_file: Path | None, overlay: Path | None) -> None:
    """Print every Kubernetes object one Enclave becomes, as multi-document YAML.

    The hub-config ConfigMap holds the hub's jupyterhub_config.py, generated from the
    same Enclave, tier and settings (and the tier overlay, when given); secrets are
    never printed."""
    inputs = _load_inputs(settings_file=settings_file, overlay=overlay)
    try:
        enclave = read_enclave_file(file)
        tier = inputs.catalog.get(enclave.tier)
    except (InvalidEnclaveError, PolicyError) as e:
        _fail(str(e))
    objects = render_enclave(
        enclave=enclave, tier=tier, settings=inputs.settings, hub_config=inputs.hub_config
    )
    click.echo(to_yaml(objects), nl=False)


@click.command()
def crd() -> None:
    """Print the CustomResourceDefinition of the Enclave resource (enclaves.enclave.dev)."""
    click.echo(yaml.safe_dump(enclave_crd(), sort_keys=False), nl=False)


def _report_text(live: LiveIsolation, differences: tuple[str, ...], tier_id: str) -> str:
    report = live.report
    lines = [
        f"Enclave {live.enclave.name} (tier {tier_id}), namespace {report.namespace}",
        f"NetworkPolicies: {', '.join(report.policies) or 'none'}",
        f"Not written by the controller: {', '.join(live.foreign_policies) or 'none'}",
        "NetworkPolicies bind only where the cluster's network plugin enforces them; "
        "this report reads the policies, not the traffic.",
    ]
    for reach in report.classes:
        lines += ["", f"{reach.pod_class} pods"]
        for word, arrow, isolated, grants in (
            ("egress", "->", reach.egress_isolated, reach.egress),
            ("ingress", "<-", reach.ingress_isolated, reach.ingress),
        ):
            if not isolated:
                lines.append(f"  {word}: NOT ISOLATED (no policy selects these pods)")
                continue
            lines.append(f"  {word}: {'nothing' if not grants else ''}".rstrip())
            lines += [f"    {arrow} {g}" for g in grants]
        metadata = report.reaches_address(reach.pod_class, str(METADATA_ADDRESS), port=80)
        lines.append(
            f"  cloud metadata {METADATA_ADDRESS}: {'REACHABLE' if metadata else 'unreachable'}"
        )
    lines += ["", "Paths between the enclave's pods:"]
    lines += [
        f"  {p.source} -> {p.destination} on {', '.join(map(str, p.ports))}" for p in report.paths
    ] or ["  none"]
    lines.append("")
    if differences:
        lines.append(f"DIFFERS from what tier {tier_id} allows:")
        lines += [f"  {d}" for d in differences]
    else:
        lines.append(f"Matches what tier {tier_id} allows.")
    return "\n".join(lines)


@click.command()
@click.argument("name")
@_inputs(kube=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def isolation(
    name: str,
    settings_file: Path | None,
    overlay: Path | None,
    kubeconfig: Path | None,
    as_json: bool,
) -> None:
    """What each pod class of enclave NAME can reach, computed from its live NetworkPolicies.

    Exits 0 when the live policies allow exactly what the tier allows, 1 when they differ.
    """
    inputs = _load_inputs(
        settings_file=settings_file, overlay=overlay, kube=True, kubeconfig=kubeconfig
    )
    try:
        live = live_isolation(api_client=inputs.api_client, name=name)
        tier = inputs.catalog.get(live.enclave.tier)
    except (InvalidEnclaveError, PolicyError) as e:
        _fail(str(e))
    except ClusterError as e:
        _fail(str(e), code=1)
    finally:
        inputs.api_client.close()
    expected = expected_isolation(enclave=live.enclave, tier=tier, settings=inputs.settings)
    differences = live.report.differences(expected)
    if as_json:
        out = {
            "enclave": live.enclave.name,
            "tier": tier.id,
            "report": dataclasses.asdict(live.report),
            "foreign_policies": list(live.foreign_policies),
            "matches_tier": not differences,
            "differences": list(differences),
        }
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        click.echo(_report_text(live, differences, tier.id))
    if differences:
        sys.exit(1)


def _file_option(flag: str, help_text: str) -> Callable[[F], F]:
    """An option naming an existing file (tokens travel in files, never in argv)."""
    return click.option(
        flag, type=click.Path(exists=True, dir_okay=False, path_type=Path), help=help_text
    )


@click.command()
@click.argument("name")
@click.option("--reason", required=True, help="Why (recorded with who did it).")
@click.option("--lift", is_flag=True, help="Lift the quarantine instead (a reason is needed too).")
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="KUBECONFIG",
    help="The cluster and the credentials to use (env: KUBECONFIG).",
)
def quarantine(name: str, reason: str, lift: bool, kubeconfig: Path | None) -> None:
    """Quarantine enclave NAME at once: all traffic denied, hub and servers stopped.

    Sets ``spec.quarantine`` with the reason, the time and who asked (the cluster's
    own name for these credentials); the controller does the rest. ``--lift`` sets it
    inactive, with its own reason.
    """
    inputs = _load_inputs(settings_file=None, overlay=None, kube=True, kubeconfig=kubeconfig)
    try:
        set_quarantine(api_client=inputs.api_client, name=name, reason=reason, active=not lift)
    except InvalidEnclaveError as e:
        _fail(str(e))
    except ClusterError as e:
        _fail(str(e), code=1)
    finally:
        inputs.api_client.close()
    click.echo(f"enclave {name}: quarantine {'lifted' if lift else 'set'}")


@click.group()
def controller() -> None:
    """Run the controller that keeps each Enclave's objects as its tier demands."""


@controller.command()
@click.option("--kube", is_flag=True, help="Reconcile Enclave resources of a Kubernetes cluster.")
@_inputs(kube=True)
@click.option(
    "--resync-interval",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    help="Seconds between level-triggered reconciliations of every Enclave.",
)
@click.option("--audit-url", help="The audit service's intake (events go with source=controller).")
@_file_option("--audit-token-file", "File holding the controller's intake token.")
@click.option(
    "--audit-spool",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("controller-audit-spool.db"),
    show_default=True,
    help="The durable spool of events not yet acknowledged.",
)
@click.option(
    "--portal-url",
    help="The portal, whose admin API registers each enclave and ends its members' sessions.",
)
@_file_option("--portal-admin-token-file", "File holding the portal's admin token.")
@click.option(
    "--expiry-grace-days",
    type=click.FloatRange(min=0.0),
    default=30.0,
    show_default=True,
    help="Days after notAfter before a suspended enclave's volumes are destroyed.",
)
@click.option(
    "--lease-namespace",
    help="Hold the Lease enclave-controller in this namespace and reconcile only while "
    "holding it (leader election between replicas). Without it, no election.",
)
@click.option(
    "--health-port",
    type=click.IntRange(min=0, max=65535),
    help="Serve /healthz, /readyz and /metrics on this port.",
)
def run(
    kube: bool,
    settings_file: Path | None,
    overlay: Path | None,
    kubeconfig: Path | None,
    resync_interval: float,
    audit_url: str | None,
    audit_token_file: Path | None,
    audit_spool: Path,
    portal_url: str | None,
    portal_admin_token_file: Path | None,
    expiry_grace_days: float,
    lease_namespace: str | None,
    health_port: int | None,
) -> None:
    """Run the reconciler until interrupted (SIGINT or SIGTERM).

    Without --audit-url nothing is recorded and deleted Enclaves wait (their end of
    use must be recorded first); without --portal-url no enclave is registered with
    the portal and sessions are not revoked.
    """
    from ._ops import LeaseElector, Metrics, serve_health
    from .operator import OperatorConfig, run_elected, run_operator

    if not kube:
        _fail("give --kube (the local backend is not built yet)")
    inputs = _load_inputs(
        settings_file=settings_file,
        overlay=overlay,
        kube=True,
        kubeconfig=kubeconfig,
    )
    if bool(audit_url) != bool(audit_token_file):
        _fail("give --audit-url and --audit-token-file together")
    if bool(portal_url) != bool(portal_admin_token_file):
        _fail("give --portal-url and --portal-admin-token-file together")
    audit = None
    if audit_url and audit_token_file:
        audit = AuditClient.http(
            url=audit_url,
            token=_secret(audit_token_file),
            spool_path=audit_spool,
            source="controller",
        )
    portal = (
        PortalAdmin(url=portal_url, token=_secret(portal_admin_token_file))
        if portal_url and portal_admin_token_file
        else None
    )
    operator_config = OperatorConfig(
        api_client=inputs.api_client,
        catalog=inputs.catalog,
        settings=inputs.settings,
        hub_config=inputs.hub_config,
        resync_interval_s=resync_interval,
        lifecycle=Lifecycle(
            audit=AuditRecorder(client=audit) if audit else None,
            portal=portal,
            expiry_grace=timedelta(days=expiry_grace_days),
        ),
        metrics=Metrics(),
    )
    metrics = operator_config.metrics
    assert metrics is not None
    server = (
        serve_health(port=health_port, metrics=metrics, ready=lambda: True)
        if health_port is not None
        else None
    )
    try:
        if lease_namespace is None:
            metrics.leader.set(1)
            # kopf stops on SIGINT/SIGTERM when it runs in the main thread.
            run_operator(operator_config)
        else:
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            identity = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
            elector = LeaseElector(
                api_client=inputs.api_client,
                namespace=lease_namespace,
                name="enclave-controller",
                identity=identity,
            )
            lost = run_elected(
                operator_config,
                elector=elector,
                stop_flag=stop,
                log=lambda m: click.echo(f"enclave controller: {m}", err=True),
            )
            if lost:
                _fail("the Lease was lost; exiting so that a restart competes again", code=1)
    finally:
        if server is not None:
            server.shutdown()
        inputs.api_client.close()
        if audit is not None:
            audit.close()


def _secret(path: Path) -> str:
    """A token from a file (never from argv), or exit 2 saying which file."""
    try:
        value = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        _fail(f"{path} cannot be read")
    if not value:
        _fail(f"{path} is empty")
    return value
