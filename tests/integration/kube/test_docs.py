"""docs/testing.md names the versions that are really pinned and really loaded."""

from __future__ import annotations

from pathlib import Path

from tests.harness.helm import helm_sdk_version
from tests.harness.kube import ETCD_VERSION, K8S_VERSION

DOC = (Path(__file__).resolve().parents[3] / "docs" / "testing.md").read_text(encoding="utf-8")


def test_docs_name_the_pinned_versions():
    assert f"| v{K8S_VERSION} |" in DOC
    assert f"| v{ETCD_VERSION} (the version Kubernetes v{K8S_VERSION} pins) |" in DOC
    assert f"kube/{K8S_VERSION}/bin" in DOC


def test_docs_name_the_helm_that_is_loaded():
    assert f"| Helm | {helm_sdk_version()} Go SDK" in DOC
