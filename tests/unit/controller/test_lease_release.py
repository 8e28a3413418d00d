"""A replica that cannot give its Lease up says so and stops cleanly."""

from __future__ import annotations

import socket

from kubernetes import client

from controller.kube._ops import LeaseElector


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_lease_that_cannot_be_released_is_reported_not_swallowed() -> None:
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{_closed_port()}"
    configuration.retries = False
    elector = LeaseElector(
        api_client=client.ApiClient(configuration),
        namespace="enclave-system",
        name="enclave-controller",
        identity="replica-a",
        lease_duration_s=15,
    )
    said: list[str] = []

    assert elector.release(said.append) is False

    assert said == [
        "could not release the Lease enclave-system/enclave-controller (NewConnectionError); "
        "it expires in 15 s"
    ]
