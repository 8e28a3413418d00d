"""``render_enclave``: every object one Enclave becomes, a pure function of its inputs.

spec + tier + settings (+ the operator's tier overlay, + the Enclave's uid when
the reconciler knows it) -> a list of manifests in the order they are applied.
No I/O, no clock, no randomness: the same inputs always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from policies import Tier

from ._hubconfig import make_hub_config_map
from ._objects import (
    Owner,
    make_dataset_claim,
    make_hub_db_claim,
    make_hub_role,
    make_hub_role_binding,
    make_hub_service,
    make_ingress,
    make_limit_range,
    make_namespace,
    make_network_policies,
    make_proxy_services,
    make_resource_quota,
    make_service_accounts,
)
from ._settings import HubConfig, RenderSettings
from ._spec import Enclave
from ._workloads import make_hub_deployment, make_proxy_deployment

__all__ = ["STATES", "HubConfig", "RenderSettings", "render_enclave", "to_yaml"]

#: ``open``: everything. ``suspended`` (the approval ran out): the hub and proxy
#: scaled to zero and no Ingress. ``quarantined``: that, and only the default-deny
#: policy (every allow policy is gone, so no pod can send or receive anything).
STATES = ("open", "suspended", "quarantined")


def render_enclave(
    *,
    enclave: Enclave,
    tier: Tier,
    settings: RenderSettings,
    hub_config: HubConfig | None,
    owner_uid: str | None = None,
    state: str = "open",
) -> list[dict[str, Any]]:
    """All objects of ``enclave``, namespace first, isolation before any workload.

    The ``hub-config`` ConfigMap holds the hub's configuration, generated from the
    same inputs (``_hubconfig``); ``hub_config`` adds the operator's tier overlay
    (None: none). ``tier`` must be the tier ``enclave.tier`` names.
    ``state`` is one of :data:`STATES`; a closed enclave renders fewer objects, and
    the reconciler removes the ones it no longer renders.
    """
    if tier.id != enclave.tier:
        raise ValueError(f"tier {tier.id} given for an enclave of tier {enclave.tier}")
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    owner = Owner(name=enclave.name, uid=owner_uid)
    objects: list[dict[str, Any]] = [make_namespace(enclave, tier, owner)]
    # Isolation first: no workload exists before the default-deny policy does.
    objects += make_network_policies(enclave, tier, settings, owner)
    objects += make_service_accounts(enclave, owner)
    objects += [make_hub_role(enclave, owner), make_hub_role_binding(enclave, owner)]
    objects += [
        make_resource_quota(enclave, settings, owner),
        make_limit_range(enclave, settings, owner),
    ]
    objects += [make_dataset_claim(enclave, ds, settings, owner) for ds in enclave.datasets]
    objects.append(make_hub_db_claim(enclave, settings, owner))
    config_map = make_hub_config_map(enclave, tier, settings, hub_config or HubConfig(), owner)
    objects.append(config_map)
    objects.append(make_hub_service(enclave, owner))
    objects += make_proxy_services(enclave, owner)
    objects.append(make_hub_deployment(enclave, tier, settings, owner, config_map=config_map))
    objects.append(make_proxy_deployment(enclave, tier, settings, owner))
    objects.append(make_ingress(enclave, settings, owner))
    return objects if state == "open" else _closed(objects, quarantined=state == "quarantined")


def _closed(objects: list[dict[str, Any]], *, quarantined: bool) -> list[dict[str, Any]]:
    """The objects of a closed enclave: no Ingress, no running hub or proxy."""
    out: list[dict[str, Any]] = []
    for obj in objects:
        if obj["kind"] == "Ingress":
            continue
        if (
            quarantined
            and obj["kind"] == "NetworkPolicy"
            and obj["metadata"]["name"] != ("default-deny")
        ):
            continue
        if obj["kind"] == "Deployment":
            obj = {**obj, "spec": {**obj["spec"], "replicas": 0}}
        out.append(obj)
    return out


def to_yaml(objects: Sequence[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in the order the ``make_*`` functions wrote them."""
    return yaml.safe_dump_all(list(objects), sort_keys=False, explicit_start=True)
