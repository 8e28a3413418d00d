"""A spawner for tests that needs no OS account per member.

JupyterHub's ``SimpleLocalProcessSpawner`` (for tests only: every server runs as the
hub's own user, home under /tmp) with the product's audit records around it.
"""

from __future__ import annotations

from jupyterhub.spawner import SimpleLocalProcessSpawner

from controller.workspace.hub import AuditedSpawnerMixin


class AuditedTestSpawner(AuditedSpawnerMixin, SimpleLocalProcessSpawner):  # type: ignore[misc]
    pass
