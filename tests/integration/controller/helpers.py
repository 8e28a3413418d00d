"""Small helpers for the controller's integration tests."""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.kube import GROUP, VERSION, RenderSettings
from controller.kube._lifecycle import AuditRecorder
from controller.kube._reconcile import Lifecycle
from controller.kube.operator import OperatorConfig, run_operator
from controller.portal_admin import PortalAdmin
from policies import load_catalog
from tests.assets.controller import example, load_document
from tests.harness.audit_service import AuditEnv
from tests.harness.kube_fixtures import ServiceAccountClient

#: The render settings of the reconciler these tests run (the test API server's address).
SETTINGS = RenderSettings(api_server_cidrs=("10.0.0.1/32",))


def wait_for(what: str, condition: Callable[[], bool], *, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)  # the poll interval; the deadline bounds the wait


def get_enclave(kube_api: Any, name: str) -> dict[str, Any] | None:
    """The Enclave resource ``name`` as the API server holds it, or None when gone."""
    try:
        found: dict[str, Any] = client.CustomObjectsApi(kube_api).get_cluster_custom_object(
            GROUP, VERSION, "enclaves", name
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return found


def delete_enclave(kube_api: Any, name: str) -> None:
    """Delete the Enclave ``name`` (already gone is fine)."""
    try:
        client.CustomObjectsApi(kube_api).delete_cluster_custom_object(
            GROUP, VERSION, "enclaves", name
        )
    except client.ApiException as e:
        if e.status != 404:
            raise


def recorded(env: AuditEnv, needle: str) -> bool:
    """Whether an entry of the audit store of ``env`` contains ``needle``."""
    conn = sqlite3.connect(env.db_path)
    try:
        rows = conn.execute("SELECT * FROM audit_entries").fetchall()
    finally:
        conn.close()
    return any(needle in repr(row) for row in rows)


def audited(env: AuditEnv, *, action: str, enclave: str) -> list[dict[str, Any]]:
    """The entries of ``env``'s audit store with ``action`` for ``enclave``, as events."""
    conn = sqlite3.connect(env.db_path)
    try:
        rows = conn.execute(
            "SELECT leaf FROM audit_entries WHERE action = ? AND enclave = ? ORDER BY idx",
            (action, enclave),
        ).fetchall()
    finally:
        conn.close()
    return [dict(json.loads(bytes(leaf))) for (leaf,) in rows]


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """The status condition of type ``kind`` ({} when absent)."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    return {}


def phase(kube_api: Any, name: str) -> str | None:
    return ((get_enclave(kube_api, name) or {}).get("status") or {}).get("phase")


@contextlib.contextmanager
def running_operator(config: OperatorConfig) -> Iterator[None]:
    """The reconciler in a thread until the block ends."""
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=run_operator, args=(config,), kwargs={"stop_flag": stop, "ready_flag": ready}
    )
    thread.start()
    try:
        assert ready.wait(60), "the operator did not start within 60 s"
        yield
    finally:
        stop.set()
        thread.join(60)


@contextlib.contextmanager
def counted_writes(api_client: Any) -> Iterator[list[str]]:
    """The requests ``api_client`` sends in the block that are not reads ("METHOD URL")."""
    writes: list[str] = []
    rest = api_client.rest_client
    original = rest.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() not in ("GET", "HEAD", "OPTIONS"):
            writes.append(f"{method} {url}")
        return original(method, url, *args, **kwargs)

    rest.request = request
    try:
        yield writes
    finally:
        rest.request = original


def in_force(doc: dict[str, Any], *, name: str, days: int = 365) -> dict[str, Any]:
    """``doc`` renamed, with an approval in force from yesterday for ``days`` days."""
    now = datetime.now(UTC)
    doc["metadata"]["name"] = name
    doc["spec"]["approval"]["notBefore"] = f"{now - timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"
    doc["spec"]["approval"]["notAfter"] = f"{now + timedelta(days=days):%Y-%m-%dT%H:%M:%SZ}"
    return doc


def operator_config(
    identity: ServiceAccountClient,
    *,
    audit: AuditRecorder | None = None,
    portal: PortalAdmin | None = None,
    resync_interval_s: float = 1.0,
    clock: Callable[[], datetime] | None = None,
) -> OperatorConfig:
    """The reconciler as ``identity`` (its ServiceAccount), with the built-in catalog,
    :data:`SETTINGS`, a 1 s retry, and the audit recorder and portal client given."""
    return OperatorConfig(
        api_client=identity.api_client,
        catalog=load_catalog(),
        settings=SETTINGS,
        resync_interval_s=resync_interval_s,
        retry_delay_s=1.0,
        lifecycle=Lifecycle(audit=audit, portal=portal),
        **({"clock": clock} if clock else {}),
    )


def create_enclave(
    kube_api: Any,
    *,
    tier: str,
    suffix: str,
    members: list[str] | None = None,
    access_networks: list[str] | None = None,
) -> str:
    """Create an Enclave from the ``tier`` example, in force, under a fresh name ending in
    ``suffix`` (members and access networks replaced when given); its name."""
    name = f"t{secrets.token_hex(3)}-{suffix}"
    doc = in_force(load_document(example(tier)), name=name)
    if members is not None:
        doc["spec"]["members"] = [{"user": m, "role": "researcher"} for m in members]
    if access_networks is not None:
        doc["spec"]["accessNetworks"] = access_networks
    client.CustomObjectsApi(kube_api).create_cluster_custom_object(GROUP, VERSION, "enclaves", doc)
    return name


def controller_argv(*, kubeconfig: Path, audit_url: str, token: str, workdir: Path) -> list[str]:
    """``enclave controller run --kube`` as the given identity, resync 1 s, with audit.

    The intake token goes into a file in ``workdir`` (never argv); each call its own spool.
    """
    token_file = workdir / "audit-token"
    token_file.write_text(token)
    spool = workdir / f"spool-{secrets.token_hex(3)}.db"
    return [
        str(Path(sys.executable).parent / "enclave"),
        "controller",
        "run",
        "--kube",
        "--kubeconfig",
        str(kubeconfig),
        "--resync-interval",
        "1",
        "--audit-url",
        audit_url,
        "--audit-token-file",
        str(token_file),
        "--audit-spool",
        str(spool),
    ]
