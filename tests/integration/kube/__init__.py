"""Integration tests against the real Kubernetes control plane (tests/harness/kube.py)."""
