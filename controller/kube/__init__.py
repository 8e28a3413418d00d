"""The Kubernetes backend: the ``Enclave`` resource and what one Enclave becomes.

Called by the ``enclave`` CLI (``render``, ``isolation``, ``crd``) and, next, by the
reconciler. Building manifests (``render_enclave`` and the ``make_*`` functions) is
pure and separate from talking to a cluster; nothing here may half-apply a spec.
"""

from ._isolation import (
    ANYWHERE,
    Grant,
    IsolationReport,
    Peer,
    PodClass,
    PortRange,
    analyse_policies,
)
from ._render import HubConfig, RenderSettings, render_enclave, to_yaml
from ._schema import (
    CRD_NAME,
    GROUP,
    KIND,
    VERSION,
    Problem,
    enclave_crd,
    validate_enclave,
)
from ._slugs import safe_slug
from ._spec import Approval, Dataset, Enclave, Member, Workspace, load_enclave
from .errors import ClusterError, ControllerError, InvalidEnclaveError

__all__ = [
    "ANYWHERE",
    "CRD_NAME",
    "GROUP",
    "KIND",
    "VERSION",
    "Approval",
    "ClusterError",
    "ControllerError",
    "Dataset",
    "Enclave",
    "Grant",
    "HubConfig",
    "InvalidEnclaveError",
    "IsolationReport",
    "Member",
    "Peer",
    "PodClass",
    "PortRange",
    "Problem",
    "RenderSettings",
    "Workspace",
    "analyse_policies",
    "enclave_crd",
    "load_enclave",
    "render_enclave",
    "safe_slug",
    "to_yaml",
    "validate_enclave",
]
