"""An enclave's hub on Kubernetes: its configuration, from the shared generator.

``make_kube_hub_config`` is ``controller.workspace.make_hub_config`` (the same
authenticator, secure defaults, idle culler and hardened server arguments as the
local backend) with the site as the hub's pod sees it, plus what only Kubernetes
has: the proxy runs in a Deployment of its own (the hub does not start it, and
reaches its API through the ``proxy-api`` Service) and the spawner is KubeSpawner,
configured with the single-user pod (``singleuser_spawner_traits``). Single-user
pods resolve no names, so the hub API and the audit intake they are handed are the
Services' ClusterIPs, which the hub resolves when it loads the configuration
(``ResolvedURL``): the text stays a pure function of the inputs.
``make_hub_config_map`` puts the rendered ``jupyterhub_config.py`` (and the tier
overlay, when the operator gave one) into the ``hub-config`` ConfigMap. Pure; no
secret is in either: the hub and each server read theirs from files in
``SECRETS_DIR``, by path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from controller.workspace import (
    EnclaveSpec,
    HubSite,
    Member,
    ResolvedURL,
    SecretFile,
    make_hub_config,
)
from controller.workspace import HubConfig as GeneratedConfig
from policies import Tier

from ._objects import (
    HUB_CONFIG,
    HUB_PORT,
    PROXY_API_PORT,
    Obj,
    Owner,
    _meta,
    hub_host,
    namespace_name,
)
from ._settings import HubConfig, RenderSettings
from ._spec import Enclave
from ._workloads import (
    OVERLAY_DIR,
    OVERLAY_FILE,
    SECRETS_DIR,
    WORKSPACE_SPOOL,
    singleuser_spawner_traits,
)

__all__ = ["HUB_STATE_DIR", "KUBE_SPAWNER_CLASS", "make_hub_config_map", "make_kube_hub_config"]

#: The spawner of a hub on Kubernetes (``controller.workspace.kube``).
KUBE_SPAWNER_CLASS = "controller.workspace.kube.AuditedKubeSpawner"
#: The hub's database volume (its SQLite database and its audit spool).
HUB_STATE_DIR = Path("/srv/jupyterhub")


def make_kube_hub_config(
    *, enclave: Enclave, tier: Tier, settings: RenderSettings, hub_config: HubConfig
) -> GeneratedConfig:
    """The configuration of ``enclave``'s hub in its pod, under ``tier``."""
    overlay = hub_config.tier_overlay is not None
    secrets = Path(SECRETS_DIR)
    site = HubSite(
        portal_url=settings.portal_url,
        portal_backchannel_url=settings.portal_internal_url,
        public_url=f"https://{hub_host(enclave, settings)}",
        hub_api_port=HUB_PORT,
        proxy_api_port=PROXY_API_PORT,
        state_dir=HUB_STATE_DIR,
        secret_dir=secrets,
        audit_url=settings.audit_url,
        # not started by the hub (ConfigurableHTTPProxy.should_start is False below)
        proxy_command=("configurable-http-proxy",),
        python="python3",
        spawner_class=KUBE_SPAWNER_CLASS,
        tier_overlay=Path(OVERLAY_DIR) / OVERLAY_FILE if overlay else None,
        lab_settings_dir=None,
        workspace_args=(
            f"--EnclaveWorkspace.audit_token_file={secrets / 'audit_token'}",
            f"--EnclaveWorkspace.audit_spool={WORKSPACE_SPOOL}",
        ),
    )
    generated = make_hub_config(
        spec=EnclaveSpec(
            name=enclave.name,
            tier=enclave.tier,
            members=tuple(Member(user=m.user, role=m.role) for m in enclave.members),
        ),
        tier=tier,
        site=site,
    )
    # Single-user pods have no DNS: the hub resolves the Services they reach (its own,
    # the audit intake's) to their ClusterIPs when it loads this configuration.
    audit = "--EnclaveWorkspace.audit_url="
    args = [
        ResolvedURL(audit, settings.audit_url) if arg == audit + settings.audit_url else arg
        for arg in generated.spawner["args"]
    ]
    return dataclasses.replace(
        generated,
        spawner={**generated.spawner, "args": args},
        # the proxy and the single-user pods reach the hub through its Service; the
        # idle culler, in the hub's pod, on loopback (the hub's policy admits no hub)
        hub_bind_url=f"http://0.0.0.0:{HUB_PORT}",
        proxy_api_url=f"http://proxy-api:{PROXY_API_PORT}",
        extra={
            "JupyterHub": {
                "public_url": f"https://{hub_host(enclave, settings)}/",
                "hub_connect_url": ResolvedURL(
                    "", f"http://hub.{namespace_name(enclave)}.svc:{HUB_PORT}"
                ),
            },
            "ConfigurableHTTPProxy": {
                "should_start": False,
                "auth_token": SecretFile(secrets / "proxy_token"),
            },
            "KubeSpawner": singleuser_spawner_traits(enclave, tier, settings, overlay=overlay),
        },
    )


def make_hub_config_map(
    enclave: Enclave, tier: Tier, settings: RenderSettings, hub_config: HubConfig, owner: Owner
) -> Obj:
    """``hub-config``: the generated ``jupyterhub_config.py``, and the tier overlay if any."""
    config = make_kube_hub_config(
        enclave=enclave, tier=tier, settings=settings, hub_config=hub_config
    )
    data = {"jupyterhub_config.py": config.render()}
    if hub_config.tier_overlay is not None:
        data[OVERLAY_FILE] = hub_config.tier_overlay
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(enclave, owner, name=HUB_CONFIG, component="hub"),
        "data": data,
    }
