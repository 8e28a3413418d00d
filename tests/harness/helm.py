"""Real Helm for the tests: Helm v4's Go SDK, loaded from the ``helm-python-sdk`` wheel.

The wheel ships ``libhelm_c`` (Helm's own Go code behind a C ABI), so install,
upgrade and uninstall run the same code as the ``helm`` command, against any
kubeconfig, here the test control plane's (``tests/harness/kube.py``). Callers:
the ``helm`` fixture in ``tests/harness/kube_fixtures.py`` and chart tests.
When the wheel is missing, :func:`open_helm` raises saying to run ``make setup``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Helm", "HelmHarnessError", "ReleaseInfo", "helm_sdk_version", "open_helm"]


class HelmHarnessError(RuntimeError):
    """Helm could not be loaded or an action failed; the message carries Helm's own."""


def _helm_module() -> Any:
    try:
        import helm_python
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise HelmHarnessError(
            "the helm-python-sdk wheel (Helm v4's Go SDK) is not installed; run `make setup`"
        ) from e
    return helm_python


def helm_sdk_version() -> str:
    """The version of Helm's Go SDK inside the wheel, e.g. ``v4.2.3``."""
    return str(_helm_module().helm_sdk_version())


@dataclass(frozen=True, kw_only=True)
class ReleaseInfo:
    """What Helm stored about one revision of a release."""

    name: str
    namespace: str
    revision: int
    status: str
    chart_version: str
    manifest: str

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> ReleaseInfo:
        """Wrap one release summary as the SDK returns it (flat JSON, see helm_python)."""
        return cls(
            name=str(summary["name"]),
            namespace=str(summary["namespace"]),
            revision=int(summary["revision"]),
            status=str(summary["status"]),
            chart_version=str(summary["chart_version"]),
            manifest=str(summary.get("manifest", "")),
        )


class Helm:
    """Helm actions in one namespace through one kubeconfig; close it when done."""

    def __init__(self, *, kubeconfig: Path, namespace: str) -> None:
        helm = _helm_module()
        self._errors: type[Exception] = helm.HelmError
        self._namespace = namespace
        self._config = helm.Config(kubeconfig_path=str(kubeconfig), namespace=namespace)

    def _run(self, what: str, action: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return action(*args, **kwargs)
        except self._errors as e:
            raise HelmHarnessError(f"helm {what} failed: {e}") from e

    def install(
        self, chart: Path, *, release: str, values: dict[str, Any] | None = None
    ) -> ReleaseInfo:
        summary = self._run(
            "install",
            self._config.install,
            str(chart),
            release,
            values,
            namespace=self._namespace,
            timeout=120,
        )
        return ReleaseInfo.from_summary(summary)

    def upgrade(
        self, chart: Path, *, release: str, values: dict[str, Any] | None = None
    ) -> ReleaseInfo:
        summary = self._run(
            "upgrade",
            self._config.upgrade,
            str(chart),
            release,
            values,
            namespace=self._namespace,
            timeout=120,
        )
        return ReleaseInfo.from_summary(summary)

    def uninstall(self, *, release: str) -> ReleaseInfo:
        result = self._run("uninstall", self._config.uninstall, release, timeout=120)
        return ReleaseInfo.from_summary(result["release"])

    def status(self, *, release: str) -> ReleaseInfo:
        return ReleaseInfo.from_summary(self._run("status", self._config.status, release))

    def history(self, *, release: str) -> list[ReleaseInfo]:
        return [
            ReleaseInfo.from_summary(s) for s in self._run("history", self._config.history, release)
        ]

    def list_releases(self) -> list[str]:
        return [str(s["name"]) for s in self._run("list", self._config.list, all_states=True)]

    def close(self) -> None:
        self._config.close()

    def __enter__(self) -> Helm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_helm(*, kubeconfig: Path, namespace: str) -> Helm:
    """A :class:`Helm` bound to ``kubeconfig`` and ``namespace``."""
    return Helm(kubeconfig=kubeconfig, namespace=namespace)
