"""Workspaces: the hub configuration, its authenticator and the hardened single-user server.

Called by the controller's backends (local now, Kubernetes later) to configure one
JupyterHub per enclave, and loaded *inside* the hub and the single-user server
processes. It must never loosen a tier's control, and never let a refusal go unaudited.
"""

from ._hubconfig import (
    HubConfig,
    HubSite,
    IdleCuller,
    LocalSandbox,
    ResolvedURL,
    SecretFile,
    make_hub_config,
)
from ._spec import EnclaveSpec, Member
from .errors import SpecError, WorkspaceError

__all__ = [
    "EnclaveSpec",
    "HubConfig",
    "HubSite",
    "IdleCuller",
    "LocalSandbox",
    "Member",
    "ResolvedURL",
    "SecretFile",
    "SpecError",
    "WorkspaceError",
    "make_hub_config",
]
