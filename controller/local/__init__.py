"""The local backend: Enclave YAML files in a directory become running JupyterHubs on
this host, each single-user server in its own kernel-enforced no-egress sandbox.

Called by ``enclave controller run --local``, by ``enclave demo`` and by JupyterHub
(``SandboxSpawner`` is its spawner class). It registers each enclave with the portal,
runs one hub per enclave as supervised local processes, must never serve an enclave
whose file is invalid or whose approval has expired, and must never start a
single-user server outside its sandbox (see docs/workspaces-sandbox.md).
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
