"""``enclave render``, ``enclave crd`` and ``enclave isolation``: the Kubernetes backend's commands.

Bad input leaves as one sentence on stderr with exit code 2; nothing is printed
to stdout then, so a pipe into ``kubectl apply`` never receives half a render.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml

from policies import CatalogError, PolicyError, load_catalog

from ._render import HubConfig, RenderSettings, render_enclave, to_yaml
from ._schema import Problem, enclave_crd
from ._spec import read_enclave_file
from .errors import InvalidEnclaveError

__all__ = ["crd", "render"]


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
