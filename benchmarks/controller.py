"""Benchmark: N Enclaves applied at once to a real control plane, and a no-op resync.

Run with ``.venv/bin/python -P benchmarks/controller.py [--n 200]`` (needs the
Kubernetes binaries of ``make setup``). It starts the test harness's control plane,
installs the CRD, runs the reconciler in this process (as the cluster admin: the
benchmark measures work, not RBAC) and creates N Enclaves from 16 threads.

Measured:
- ``provision_s``: from the first create until every Enclave reports
  ``NetworkIsolation=True`` (everything applied and confirmed from live policy);
- ``writes_per_enclave``: requests that are not reads (POST, PUT, PATCH, DELETE),
  counted on the reconciler's own connections (the kubernetes client's and kopf's),
  divided by N; the N creates are the driver's and are not counted;
- ``noop_resync_*``: one more timer round over every settled Enclave: its writes
  per enclave and the wall time of the round;
- ``provision_cpu_s``: CPU time of this process (user and system, every thread) over
  ``provision_s``: near it, the reconciler is bound by its one interpreter (the GIL);
  well below it, by waiting on the API server;
- ``peak_rss_mb``: this process's peak resident set (reconciler plus the driver).

``--profile`` also prints to stderr the reconciler's requests per enclave by method
and resource (reads too), for the provisioning and for the measured no-op round.

Each Enclave has three Services; the harness allocates Service addresses from a
/16 (``tests/harness/kube.py``), so the default 200 fit.

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.kube import CRD_NAME, GROUP, VERSION, RenderSettings, enclave_crd
from controller.kube._ops import Metrics
from controller.kube.operator import OperatorConfig, run_operator
from policies import load_catalog
from tests.harness.kube import running_control_plane

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "enclaves" / "nbdc-standard.yaml"
_READS = ("GET", "HEAD", "OPTIONS")


class WriteCounter:
    """Counts non-read requests of one kubernetes ApiClient and of every aiohttp session.

    Also keeps every request (reads too) by method and resource, for ``--profile``.
    """

    def __init__(self, api_client: Any) -> None:
        self.count = 0
        self.by_kind: Counter[str] = Counter()
        self._lock = threading.Lock()
        rest = api_client.rest_client
        original = rest.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self._add(method, url)
            return original(method, url, *args, **kwargs)

        rest.request = request
        original_aio = aiohttp.ClientSession._request
        counter = self

        async def aio_request(self: Any, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
            counter._add(method, str(url))
            return await original_aio(self, method, url, *args, **kwargs)

        aiohttp.ClientSession._request = aio_request  # type: ignore[method-assign]

    def _add(self, method: str, url: str) -> None:
        with self._lock:
            if method.upper() not in _READS:
                self.count += 1
            self.by_kind[f"{method.upper()} {_resource(url)}"] += 1

    def take(self) -> int:
        with self._lock:
            n, self.count = self.count, 0
            return n

    def take_profile(self) -> Counter[str]:
        with self._lock:
            kinds, self.by_kind = self.by_kind, Counter()
            return kinds


def _resource(url: str) -> str:
    """``/api/v1/namespaces/x/services/hub`` -> ``services`` (``enclaves/status`` for a
    subresource); with ``?watch`` when it is a watch."""
    split = urlsplit(url)
    parts = [p for p in split.path.split("/") if p]
    parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if parts[:1] == ["namespaces"] and len(parts) > 2:
        parts = parts[2:]
    kind = parts[0] if parts else "/"
    if len(parts) > 2:
        kind += "/" + parts[2]
    return kind + (" (watch)" if "watch=" in split.query else "")


def enclave_document(name: str) -> dict[str, Any]:
    """The nbdc-standard example named ``name``, its approval in force for a year."""
    doc = yaml.safe_load(EXAMPLE.read_text("utf-8"))
    now = datetime.now(UTC)
    doc["metadata"] = {"name": name}
    doc["spec"]["approval"]["notBefore"] = f"{now - timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"
    doc["spec"]["approval"]["notAfter"] = f"{now + timedelta(days=365):%Y-%m-%dT%H:%M:%SZ}"
    return doc


def install_crd(admin: Any) -> None:
    """Apply the Enclave CRD as the cluster admin and wait until it is Established."""
    ext = client.ApiextensionsV1Api(admin)
    ext.patch_custom_resource_definition(
        CRD_NAME,
        enclave_crd(),
        field_manager="bench",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    deadline = time.monotonic() + 60
    while not any(
        c.type == "Established" and c.status == "True"
        for c in ext.read_custom_resource_definition(CRD_NAME).status.conditions or []
    ):
        if time.monotonic() > deadline:
            raise SystemExit("the CRD was not Established")
        time.sleep(0.2)


def _isolated(admin: Any, names: set[str]) -> int:
    listed = client.CustomObjectsApi(admin).list_cluster_custom_object(GROUP, VERSION, "enclaves")
    done = 0
    for item in listed["items"]:
        if item["metadata"]["name"] not in names:
            continue
        for c in (item.get("status") or {}).get("conditions") or []:
            if c["type"] == "NetworkIsolation" and c["status"] == "True":
                done += 1
    return done


def _reconciles(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("enclave_controller_reconcile_duration_seconds_count")
    return value or 0.0


def _print_profile(what: str, requests: Counter[str], n: int) -> None:
    print(f"-- {what}: requests per enclave", file=sys.stderr)
    for key, count in requests.most_common():
        print(f"{count / n:8.2f}  {key}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="Enclaves applied at once.")
    parser.add_argument(
        "--resync-interval", type=float, default=60.0, help="The timer interval (s)."
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="Also print to stderr the reconciler's requests per enclave by method and "
        "resource, for the provisioning and for the no-op round.",
    )
    args = parser.parse_args()
    n = args.n
    with running_control_plane() as plane:
        admin = plane.new_api_client()
        install_crd(admin)
        controller_client = plane.new_api_client()
        counter = WriteCounter(controller_client)
        metrics = Metrics()
        config = OperatorConfig(
            api_client=controller_client,
            catalog=load_catalog(),
            settings=RenderSettings(api_server_cidrs=("10.0.0.1/32",)),
            resync_interval_s=args.resync_interval,
            retry_delay_s=2.0,
            metrics=metrics,
        )
        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(
            target=run_operator, args=(config,), kwargs={"stop_flag": stop, "ready_flag": ready}
        )
        thread.start()
        try:
            if not ready.wait(60):
                raise SystemExit("the operator did not start")
            counter.take()
            counter.take_profile()
            names = {f"b{secrets.token_hex(3)}-{i}" for i in range(n)}
            custom = client.CustomObjectsApi(admin)
            t0, cpu0 = time.monotonic(), time.process_time()
            with ThreadPoolExecutor(16) as pool:
                list(
                    pool.map(
                        lambda name: custom.create_cluster_custom_object(
                            GROUP, VERSION, "enclaves", enclave_document(name)
                        ),
                        sorted(names),
                    )
                )
            created_s = time.monotonic() - t0
            while _isolated(admin, names) < n:
                if time.monotonic() - t0 > args.timeout:
                    raise SystemExit(f"not provisioned within {args.timeout} s")
                time.sleep(0.5)
            provision_s = time.monotonic() - t0
            provision_cpu_s = time.process_time() - cpu0
            provision_writes = counter.take()
            if args.profile:
                _print_profile("provisioning", counter.take_profile(), n)
            # Let one timer round settle what the first pass left, then measure the next.
            for measured in (False, True):
                start_count = _reconciles(metrics)
                counter.take()
                counter.take_profile()
                r0 = time.monotonic()
                while _reconciles(metrics) < start_count + n:
                    if time.monotonic() - r0 > args.timeout:
                        raise SystemExit("the resync round did not finish")
                    time.sleep(0.2)
                round_s = time.monotonic() - r0
                round_writes = counter.take()
                requests = counter.take_profile()
                if args.profile and measured:
                    _print_profile("no-op timer round", requests, n)
                if measured:
                    noop_writes, noop_s = round_writes, round_s
        finally:
            stop.set()
            thread.join(120)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = _reconciles(metrics)
    mean_ms = (
        (
            metrics.registry.get_sample_value("enclave_controller_reconcile_duration_seconds_sum")
            or 0
        )
        / total
        * 1000
        if total
        else 0.0
    )
    print(
        json.dumps(
            {
                "benchmark": "controller",
                "n": n,
                "create_s": round(created_s, 2),
                "provision_s": round(provision_s, 2),
                "provision_cpu_s": round(provision_cpu_s, 2),
                "writes_per_enclave": round(provision_writes / n, 2),
                "noop_resync_writes_per_enclave": round(noop_writes / n, 2),
                "noop_resync_round_s": round(noop_s, 2),
                "reconcile_mean_ms": round(mean_ms, 1),
                "resync_interval_s": args.resync_interval,
                "peak_rss_mb": round(peak_mb, 1),
                "unit": "s, requests, MB",
            }
        )
    )


if __name__ == "__main__":
    main()
