"""The local backend's hubs run every server in the sandbox: the generator's output
with a ``LocalSandbox`` site, and the sandbox's private spool bind, as whole objects."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from controller.local import Bind, Forward, Sandbox, SandboxConfigError, bwrap_argv
from controller.workspace import (
    EnclaveSpec,
    HubSite,
    LocalSandbox,
    Member,
    SpecError,
    make_hub_config,
)
from controller.workspace._hubconfig import SANDBOX_SPAWNER_CLASS
from policies import load_catalog
from tests.unit.workspace.test_hubconfig import site as generator_site

STATE = Path("/srv/enclave/local/enclaves/gut-2026")
BOX = LocalSandbox(
    state_dir=Path("/srv/enclave/local/sandboxes"),
    datasets=(("/data/microbiome-16s", Path("/srv/datasets/ds-16s-v3")),),
    workspace_token_file=STATE / "workspace_token",
    readonly_paths=(Path("/opt/enclave/.venv"), Path("/opt/enclave/controller")),
)


def site(**over: object) -> HubSite:
    """The generator tests' site, made a local backend's: the audited sandbox."""
    local: dict[str, object] = {
        "state_dir": STATE,
        "public_url": "http://localhost:8101",
        "spawner_class": SANDBOX_SPAWNER_CLASS,
        "sandbox": BOX,
    }
    return generator_site(**{**local, **over})


def config(**over: object) -> dict[str, dict[str, object]]:
    spec = EnclaveSpec(name="gut-2026", tier="nbdc-standard", members=(Member(user="r.tanaka"),))
    hub = make_hub_config(spec=spec, tier=load_catalog().get("nbdc-standard"), site=site(**over))
    return hub.traitlets()


def test_local_hub_spawns_every_server_in_the_audited_sandbox() -> None:
    c = config()
    assert c["JupyterHub"]["spawner_class"] == "controller.local.spawner.AuditedSandboxSpawner"
    assert c["SandboxSpawner"] == {
        # jupyterhub-singleuser without the unused IRI grammar (controller.workspace._singleuser)
        "cmd": ["/opt/enclave/.venv/bin/python", "-m", "controller.workspace._singleuser"],
        "enclave": "gut-2026",
        "state_dir": "/srv/enclave/local/sandboxes",
        "datasets": [{"source": "/srv/datasets/ds-16s-v3", "target": "/data/microbiome-16s"}],
        # the sandbox's only path to the intake is this (host loopback) address
        "audit_intake_url": "http://127.0.0.1:8700",
        "audit_token_file": f"{STATE}/workspace_token",
        "readonly_paths": ["/opt/enclave/.venv", "/opt/enclave/controller"],
    }
    # the hardened extension is still what every server loads
    args = c["Spawner"]["args"]
    assert isinstance(args, list)
    assert "--ServerApp.jpserver_extensions=controller.workspace.serverext=True" in args


def test_sandbox_site_with_another_spawner_is_refused() -> None:
    with pytest.raises(SpecError, match="a site with a sandbox runs"):
        site(spawner_class="controller.workspace.hub.AuditedLocalProcessSpawner")


def test_the_audited_sandbox_spawner_is_the_sandbox_with_the_hub_records() -> None:
    from controller.local.spawner import AuditedSandboxSpawner, SandboxSpawner
    from controller.workspace.hub import AuditedSpawnerMixin

    assert (
        f"{AuditedSandboxSpawner.__module__}.{AuditedSandboxSpawner.__qualname__}"
    ) == SANDBOX_SPAWNER_CLASS
    assert AuditedSandboxSpawner.__mro__[1:3] == (AuditedSpawnerMixin, SandboxSpawner)


def _sandbox(**over: object) -> Sandbox:
    fields: dict[str, object] = {
        "run_as": None,
        "hostname": "enclave-alpha",
        "system": (),
        "readonly": (),
        "sockets_dir": Path("/srv/state/sockets/alpha/u1"),
        "home": Bind(
            source=Path("/srv/state/homes/alpha"),
            target=PurePosixPath("/home/researcher"),
            writable=True,
        ),
        "datasets": (),
        "forwards": (Forward(port=8081, socket="hub.sock"),),
        "command": ("/opt/venv/bin/jupyterhub-singleuser",),
    }
    fields.update(over)
    return Sandbox(**fields)  # type: ignore[arg-type]


def test_the_servers_spool_is_bound_under_the_private_tmp_beside_its_sockets() -> None:
    argv = bwrap_argv(sandbox=_sandbox(spool_dir=Path("/srv/state/spools/alpha/u1")))
    sockets = argv.index("/tmp/socks")
    assert argv[sockets - 2 : sockets + 4] == [
        "--bind",
        "/srv/state/sockets/alpha/u1",
        "/tmp/socks",
        "--bind",
        "/srv/state/spools/alpha/u1",
        "/tmp/spool",
    ]
    assert "/tmp/spool" not in bwrap_argv(sandbox=_sandbox())


def test_a_path_bound_over_the_spool_is_refused() -> None:
    # read-only paths may live under the private /tmp, but never over the spool
    shadow = Bind(source=Path("/srv/data"), target=PurePosixPath("/tmp/spool/audit-spool.db"))
    with pytest.raises(SandboxConfigError, match="overlaps /tmp/spool"):
        _sandbox(readonly=(shadow,))
