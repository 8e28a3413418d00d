"""The spawner of an enclave's hub on Kubernetes: KubeSpawner with the hub's records.

Loaded inside the hub (``JupyterHub.spawner_class``) when the Kubernetes backend
generated its configuration. The pod it creates is configured entirely by the
``KubeSpawner`` traits that configuration sets
(``controller.kube._workloads.singleuser_spawner_traits``); nothing here changes it.
"""

from __future__ import annotations

from kubespawner import KubeSpawner

from .hub import AuditedSpawnerMixin

__all__ = ["AuditedKubeSpawner"]


class AuditedKubeSpawner(AuditedSpawnerMixin, KubeSpawner):  # type: ignore[misc]
    """KubeSpawner with the server start, stop and spawn-failure records (``source=hub``)."""
