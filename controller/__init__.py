"""Turns ``Enclave`` specs into running workspaces (Kubernetes and local backends).

Called by operators through the ``enclave`` CLI; the only package that talks to
Kubernetes. It must never leave a spec half-applied.
"""
