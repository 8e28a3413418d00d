"""The local backend: Enclave YAML files in a directory become running JupyterHubs on this host.

Called by ``enclave controller run --local`` and by ``enclave demo``. It registers each
enclave with the portal, runs one hub per enclave as supervised local processes, and
must never serve an enclave whose file is invalid or whose approval has expired.
"""
