"""The local backend: runs each enclave's single-user servers as local processes.

Called by JupyterHub (``SandboxSpawner`` is its spawner class) and, later, by
``enclave controller run --local``. It must never start a single-user server
outside its kernel-enforced no-egress sandbox (see docs/workspaces-sandbox.md).
"""

from controller.local._errors import LocalBackendError, SandboxConfigError
from controller.local.sandbox import (
    Bind,
    Forward,
    Sandbox,
    Staged,
    Symlink,
    bwrap_argv,
    host_tcp_to_unix_argv,
    system_binds,
    unix_to_host_tcp_argv,
)

__all__ = [
    "Bind",
    "Forward",
    "LocalBackendError",
    "Sandbox",
    "SandboxConfigError",
    "Staged",
    "Symlink",
    "bwrap_argv",
    "host_tcp_to_unix_argv",
    "system_binds",
    "unix_to_host_tcp_argv",
]
