"""Benchmark: how long a tampered NetworkPolicy of an enclave stays tampered.

Run with ``.venv/bin/python -P benchmarks/drift.py [--reps 5]`` (needs the Kubernetes
binaries of ``make setup``). It starts the test harness's control plane, installs the
CRD, runs the reconciler in this process (kopf in a thread, as the cluster admin) with
the timer interval ``enclave controller run`` uses by default, and provisions one
nbdc-standard Enclave. Then, for each of issue #16's two drifts (the ``default-deny``
policy deleted; the ``singleuser`` policy's egress opened to 0.0.0.0/0), ``--reps``
times: wait a random part of the timer interval (a real intruder does not wait for the
timer either), tamper as the cluster admin, and read the live policy every 50 ms until
it is back as the controller wrote it; then wait until the Enclave says
``NetworkIsolation=True`` (``MatchesTier``) again before the next repetition.

Measured, per drift: ``*_restore_s_median`` and ``*_restore_s_max``, seconds from the
tampering request's response to the first read that finds the policy restored (the
read interval adds up to 50 ms). The target of #16 is 10 s.

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.controller import enclave_document, install_crd
from controller.kube import GROUP, VERSION, RenderSettings
from controller.kube.cli import run as controller_run
from controller.kube.operator import OperatorConfig
from policies import load_catalog
from tests.harness.kube import running_control_plane
from tests.integration.controller.helpers import condition, running_operator

#: What ``enclave controller run --kube`` uses without ``--resync-interval``.
DEFAULT_INTERVAL_S = float(
    next(p.default for p in controller_run.params if p.name == "resync_interval")  # type: ignore[arg-type]
)


def _delete_default_deny(networking: Any, ns: str) -> str:
    networking.delete_namespaced_network_policy("default-deny", ns)
    return "default-deny"


def _open_egress(networking: Any, ns: str) -> str:
    networking.patch_namespaced_network_policy(
        "singleuser", ns, {"spec": {"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}}
    )
    return "singleuser"


DRIFTS: dict[str, Callable[[Any, str], str]] = {
    "default_deny_deleted": _delete_default_deny,
    "egress_to_everywhere": _open_egress,
}


def _spec(admin: Any, name: str, ns: str) -> Any:
    """The live policy's spec (None while it does not exist)."""
    try:
        live = client.NetworkingV1Api(admin).read_namespaced_network_policy(name, ns)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return admin.sanitize_for_serialization(live.spec)


def _wait(what: str, check: Callable[[], bool], timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def _settled(admin: Any, name: str) -> bool:
    obj = client.CustomObjectsApi(admin).get_cluster_custom_object(GROUP, VERSION, "enclaves", name)
    return condition(obj, "NetworkIsolation").get("reason") == "MatchesTier"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5, help="Repetitions of each drift.")
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help="The timer interval (s); default: the CLI's.",
    )
    args = parser.parse_args()
    interval = args.resync_interval
    timeout = 3 * interval + 60
    results: dict[str, list[float]] = {d: [] for d in DRIFTS}
    with running_control_plane() as plane:
        admin = plane.new_api_client()
        install_crd(admin)
        config = OperatorConfig(
            api_client=plane.new_api_client(),
            catalog=load_catalog(),
            settings=RenderSettings(api_server_cidrs=("10.0.0.1/32",)),
            resync_interval_s=interval,
        )
        name = f"d{secrets.token_hex(3)}"
        ns = f"enclave-{name}"
        networking = client.NetworkingV1Api(admin)
        with running_operator(config):
            client.CustomObjectsApi(admin).create_cluster_custom_object(
                GROUP, VERSION, "enclaves", enclave_document(name)
            )
            _wait("provisioned", lambda: _settled(admin, name), timeout, every=0.5)
            wanted = {p: _spec(admin, p, ns) for p in ("default-deny", "singleuser")}
            for _ in range(args.reps):
                for drift, tamper in DRIFTS.items():
                    time.sleep(random.uniform(0, interval))
                    policy = tamper(networking, ns)
                    t0 = time.monotonic()
                    _wait(
                        f"{drift} restored",
                        lambda p=policy: _spec(admin, p, ns) == wanted[p],  # type: ignore[misc]
                        timeout,
                    )
                    results[drift].append(time.monotonic() - t0)
                    print(f"{drift}: restored after {results[drift][-1]:.2f} s", file=sys.stderr)
                    _wait("settled again", lambda: _settled(admin, name), timeout, every=0.5)
    figures: dict[str, Any] = {"benchmark": "drift", "n": args.reps}
    for drift, times in results.items():
        figures[f"{drift}_restore_s_median"] = round(statistics.median(times), 2)
        figures[f"{drift}_restore_s_max"] = round(max(times), 2)
    figures["resync_interval_s"] = interval
    figures["unit"] = "s"
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
