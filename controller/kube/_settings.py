"""The operator's settings for the Kubernetes backend, and the hub configuration's input.

Every setting is documented here, where it is defined (units, why this default);
``RenderSettings.from_mapping`` reads them from a YAML file (snake_case keys) and
refuses unknown keys and unsafe values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._schema import BYTES_PATTERN, CPU_PATTERN, Problem
from .errors import InvalidEnclaveError

__all__ = ["METADATA_ADDRESS", "HubConfig", "RenderSettings"]

#: The cloud metadata address: no rendered rule may ever reach it.
METADATA_ADDRESS = ipaddress.ip_address("169.254.169.254")


@dataclass(frozen=True, kw_only=True)
class HubConfig:
    """What the hub's generated configuration needs besides spec, tier and settings.

    ``tier_overlay`` is the text of the operator's tier overlay (``--overlay``), as
    the controller loaded it; it goes into the ``hub-config`` ConfigMap, and every
    single-user server loads its catalog with it, so a tier the site tightened is the
    tier its workspaces enforce. None: the built-in catalog. The configuration itself
    is generated (``controller.kube._hubconfig``); there is no file to give.
    """

    tier_overlay: str | None = None


class RenderSettings(BaseModel):
    """How rendered objects fit the operator's cluster; strict, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: The hub image (JupyterHub with KubeSpawner and the portal's authenticator).
    hub_image: str = "registry.example/enclave/hub:0.1.0"
    #: The proxy image (configurable-http-proxy).
    proxy_image: str = "registry.example/enclave/proxy:0.1.0"
    #: Each hub is served at ``https://<enclave>.<base_domain>/``.
    base_domain: str = "enclave.example"
    #: The TLS Secret the Ingress uses (a wildcard certificate for ``*.<base_domain>``).
    tls_secret: str = "enclave-tls"  # noqa: S105 (a Secret's name)
    ingress_class: str = "nginx"
    #: The ingress controller's annotation that holds the source allow-list
    #: (comma-separated CIDRs); this default is ingress-nginx's.
    ingress_allowlist_annotation: str = "nginx.ingress.kubernetes.io/whitelist-source-range"
    #: Namespace of the ingress controller's pods: the only source allowed to reach the proxy.
    ingress_namespace: str = "ingress-nginx"
    #: Namespace of the portal and the audit service.
    system_namespace: str = "enclave-system"
    #: The portal's public URL: its OIDC issuer, where browsers are sent to sign in.
    portal_url: str = "https://portal.enclave.example"
    #: The portal as a hub pod reaches it (token, user info, JWKS): a Service in
    #: ``system_namespace`` on ``portal_port``, the one portal path the hub's
    #: NetworkPolicy allows.
    portal_internal_url: str = "http://portal.enclave-system.svc:8000"
    #: The audit intake as the hub and the single-user servers reach it: a Service in
    #: ``system_namespace`` on ``audit_port``.
    audit_url: str = "http://audit.enclave-system.svc:8700"
    portal_pod_labels: Mapping[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/component": "portal"}
    )
    portal_port: int = 8000
    audit_pod_labels: Mapping[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/component": "audit"}
    )
    #: The audit intake port (what single-user servers send file events to).
    audit_port: int = 8700
    #: The API server's endpoint addresses (not the ``kubernetes`` Service IP: policies
    #: see the destination after the Service is resolved). Empty: the hub gets no
    #: egress to the API server, so it cannot spawn (fail closed until it is set).
    api_server_cidrs: tuple[str, ...] = ()
    api_server_port: int = 6443
    #: Where cluster DNS runs; the hub and the proxy resolve names, single-user
    #: servers only when the tier allows DNS.
    dns_namespace: str = "kube-system"
    dns_pod_labels: Mapping[str, str] = Field(default_factory=lambda: {"k8s-app": "kube-dns"})
    #: Label key (node selector) and taint key of dedicated node pools; the value is
    #: the enclave's name.
    pool_key: str = "enclave.dev/pool"
    #: Hub and proxy resources (per pod; requests equal limits).
    hub_cpu: str = "500m"
    hub_memory: str = "1Gi"
    proxy_cpu: str = "200m"
    proxy_memory: str = "256Mi"
    #: The hub's database volume (SQLite).
    hub_db_storage: str = "1Gi"
    #: The storage request of a dataset claim. The claim binds to a named volume
    #: (``volumeName``), which must be at least this large; small so any volume fits.
    dataset_claim_request: str = "1Mi"
    #: The user and group every container runs as: the numeric ``USER`` of the images
    #: under ``images/`` (1000:1000), checked by ``tests/unit/images``.
    run_as_user: int = 1000
    run_as_group: int = 1000

    @model_validator(mode="after")
    def _safe(self) -> RenderSettings:
        for cidr in self.api_server_cidrs:
            net = ipaddress.ip_network(cidr, strict=True)
            if net.prefixlen == 0 or METADATA_ADDRESS in net:
                raise ValueError(
                    f"api_server_cidrs: {cidr} is the whole internet or holds the "
                    "cloud metadata address"
                )
        for name in ("hub_cpu", "proxy_cpu"):
            if not re.match(CPU_PATTERN, getattr(self, name)):
                raise ValueError(f"{name} must be a CPU quantity such as 500m or 2")
        for name in ("hub_memory", "proxy_memory", "hub_db_storage", "dataset_claim_request"):
            if not re.match(BYTES_PATTERN, getattr(self, name)):
                raise ValueError(f"{name} must be a size such as 512Mi or 1Gi")
        for name in ("portal_url", "portal_internal_url", "audit_url"):
            url = getattr(self, name)
            if not re.fullmatch(r"https?://[^/\s]+(/\S*[^/])?", url):
                raise ValueError(f"{name} must be an http(s) URL without a trailing slash")
        if self.run_as_user == 0:
            raise ValueError("run_as_user must not be 0 (root)")
        return self

    @classmethod
    def from_mapping(cls, data: Any, *, source: str) -> RenderSettings:
        """Settings from a YAML mapping; an unknown key or a bad value is refused."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidEnclaveError(
                source=source, problems=[Problem(field="(file)", message="must be a mapping")]
            )
        values: dict[str, Any] = {
            str(k): tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            error = e.errors()[0]
            where = ".".join(str(p) for p in error["loc"]) or "(settings)"
            raise InvalidEnclaveError(
                source=source,
                problems=[Problem(field=where, message=error["msg"].removeprefix("Value error, "))],
            ) from None
