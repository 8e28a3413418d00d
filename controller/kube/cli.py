"""``enclave render``, ``enclave crd`` and ``enclave isolation``: the Kubernetes backend's commands.

Bad input leaves as one sentence on stderr with exit code 2; nothing is printed
to stdout then, so a pipe into ``kubectl apply`` never receives half a render.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click
import yaml

from policies import CatalogError, PolicyError, load_catalog

from ._live import LiveIsolation, expected_isolation, live_isolation
from ._render import HubConfig, RenderSettings, render_enclave, to_yaml
from ._schema import Problem, enclave_crd
from ._settings import METADATA_ADDRESS
from ._spec import read_enclave_file
from .errors import ClusterError, InvalidEnclaveError

__all__ = ["controller", "crd", "isolation", "render"]


def _fail(message: str, *, code: int = 2) -> None:
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


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file of render settings (images, domain, ingress, API server CIDRs); "
    "see docs/controller.md.",
)
@click.option(
    "--hub-config",
    "hub_files",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="A hub configuration file from the workspace generator (repeatable); "
    "becomes the hub-config ConfigMap. Without it no ConfigMap is rendered.",
)
@click.option(
    "--overlay",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ENCLAVE_TIER_OVERLAY",
    help="Operator overlay that tightens tiers (env: ENCLAVE_TIER_OVERLAY).",
)
def render(
    file: Path, settings_file: Path | None, hub_files: tuple[Path, ...], overlay: Path | None
) -> None:
    """Print every Kubernetes object one Enclave becomes, as multi-document YAML."""
    try:
        enclave = read_enclave_file(file)
        settings = _read_settings(settings_file)
        tier = load_catalog(overlay=overlay).get(enclave.tier)
        hub_config = (
            HubConfig(files=tuple((p.name, p.read_text("utf-8")) for p in hub_files))
            if hub_files
            else None
        )
    except (InvalidEnclaveError, CatalogError, PolicyError) as e:
        _fail(str(e))
        return
    objects = render_enclave(enclave=enclave, tier=tier, settings=settings, hub_config=hub_config)
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
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="KUBECONFIG",
    help="The cluster to read (env: KUBECONFIG; default: ~/.kube/config).",
)
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The render settings the controller uses (for the expected policies).",
)
@click.option(
    "--overlay",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ENCLAVE_TIER_OVERLAY",
    help="Operator overlay that tightens tiers (env: ENCLAVE_TIER_OVERLAY).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def isolation(
    name: str,
    kubeconfig: Path | None,
    settings_file: Path | None,
    overlay: Path | None,
    as_json: bool,
) -> None:
    """What each pod class of enclave NAME can reach, computed from its live NetworkPolicies.

    Exits 0 when the live policies allow exactly what the tier allows, 1 when they differ.
    """
    from kubernetes import config

    try:
        settings = _read_settings(settings_file)
        catalog = load_catalog(overlay=overlay)
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig else None
        )
    except (InvalidEnclaveError, CatalogError, PolicyError) as e:
        _fail(str(e))
        return
    except config.ConfigException as e:
        _fail(f"cannot load the kubeconfig: {e}")
        return
    try:
        live = live_isolation(api_client=api_client, name=name)
        tier = catalog.get(live.enclave.tier)
    except (InvalidEnclaveError, PolicyError) as e:
        _fail(str(e))
        return
    except ClusterError as e:
        _fail(str(e), code=1)
        return
    finally:
        api_client.close()
    expected = expected_isolation(enclave=live.enclave, tier=tier, settings=settings)
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


@click.group()
def controller() -> None:
    """Run the controller that keeps each Enclave's objects as its tier demands."""


@controller.command()
@click.option("--kube", is_flag=True, help="Reconcile Enclave resources of a Kubernetes cluster.")
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="KUBECONFIG",
    help="The cluster and the controller's credentials (env: KUBECONFIG).",
)
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file of render settings; see docs/controller.md.",
)
@click.option(
    "--hub-config",
    "hub_files",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="A hub configuration file (repeatable); becomes each hub's hub-config ConfigMap.",
)
@click.option(
    "--overlay",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ENCLAVE_TIER_OVERLAY",
    help="Operator overlay that tightens tiers (env: ENCLAVE_TIER_OVERLAY).",
)
@click.option(
    "--resync-interval",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    help="Seconds between level-triggered reconciliations of every Enclave.",
)
def run(
    kube: bool,
    kubeconfig: Path | None,
    settings_file: Path | None,
    hub_files: tuple[Path, ...],
    overlay: Path | None,
    resync_interval: float,
) -> None:
    """Run the reconciler until interrupted (SIGINT or SIGTERM)."""
    from kubernetes import config

    from .operator import OperatorConfig, run_operator

    if not kube:
        _fail("give --kube (the local backend is not built yet)")
        return
    try:
        settings = _read_settings(settings_file)
        catalog = load_catalog(overlay=overlay)
        hub_config = (
            HubConfig(files=tuple((p.name, p.read_text("utf-8")) for p in hub_files))
            if hub_files
            else None
        )
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig else None
        )
    except (InvalidEnclaveError, CatalogError, PolicyError) as e:
        _fail(str(e))
        return
    except config.ConfigException as e:
        _fail(f"cannot load the kubeconfig: {e}")
        return
    operator_config = OperatorConfig(
        api_client=api_client,
        catalog=catalog,
        settings=settings,
        hub_config=hub_config,
        resync_interval_s=resync_interval,
    )
    try:
        # kopf stops on SIGINT/SIGTERM when it runs in the main thread.
        run_operator(operator_config)
    finally:
        api_client.close()
