"""Enclave documents for the local backend's tests: valid by default, changed per test."""

from __future__ import annotations

from typing import Any

__all__ = ["MEMBER", "enclave_doc"]

MEMBER = "local-member"


def enclave_doc(name: str, *, tier: str = "nbdc-standard", **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "enclave.dev/v1alpha1",
        "kind": "Enclave",
        "metadata": {"name": name},
        "spec": {
            "tier": tier,
            "approval": {
                "ethicsReviewId": "IRB-TEST-1",
                "dataUseAgreementId": "DUA-TEST-1",
                "notBefore": "2020-01-01T00:00:00Z",
                "notAfter": "2099-01-01T00:00:00Z",
            },
            "members": [{"user": MEMBER, "role": "researcher"}],
            "workspace": {"image": "local", "cpu": "1", "memory": "1Gi", "storage": "1Gi"},
            "accessNetworks": ["127.0.0.0/8"],
        },
    }
    doc["spec"].update(spec)
    return doc
