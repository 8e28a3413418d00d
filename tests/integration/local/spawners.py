"""A spawner for the local backend's tests: no OS account per member, root allowed.

The audited ``SimpleLocalProcessSpawner`` of the workspace tests, started with
``jupyterhub-singleuser`` from this environment and ``allow_root`` (these tests run
as root in CI). Never a product setting: the sandbox spawner replaces it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.integration.workspace.hub_spawners import AuditedTestSpawner


class RootAllowedTestSpawner(AuditedTestSpawner):
    def get_args(self) -> list[str]:
        args: list[str] = super().get_args()
        return [*args, "--ServerApp.allow_root=True"]

    def _cmd_default(self) -> Any:
        return [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
