"""SandboxSpawner refuses, before starting anything, what would open a path out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.local import SandboxConfigError
from controller.local.spawner import (
    ServerPaths,
    _dataset_binds,
    _loopback_port,
    _unreachable,
    require_tools,
    server_paths,
)
from tests.harness.local_hub import shared_state_dir


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:8081/hub/api",  # a hub on another host: the bridge would leave it
        "http://0.0.0.0:8081/hub/api",
        "https://127.0.0.1:8081/hub/api",
        "http://127.0.0.1/hub/api",
        "unix+http://%2Fsock/hub/api",
    ],
)
def test_spawner_refuses_a_hub_api_not_on_host_loopback(url: str) -> None:
    with pytest.raises(SandboxConfigError, match=r"must be http://127\.0\.0\.1:PORT"):
        _loopback_port(url, what="The hub API URL")


def test_spawner_takes_the_port_of_a_loopback_hub_api() -> None:
    assert _loopback_port("http://127.0.0.1:8081/hub/api", what="x") == 8081
    assert _loopback_port("http://localhost:9000/", what="x") == 9000


@pytest.mark.parametrize(
    "entry",
    [
        {"source": "/srv/data"},
        {"source": "/srv/data", "target": "/data", "writable": True},
    ],
)
def test_spawner_refuses_a_dataset_that_is_not_source_and_target(entry: dict[str, object]) -> None:
    with pytest.raises(SandboxConfigError, match="exactly the keys source and target"):
        _dataset_binds([entry])


def test_spawner_finds_the_directory_the_host_user_cannot_search() -> None:
    nobody = 65534
    assert os.geteuid() != nobody
    with shared_state_dir() as root:
        closed = root / "closed"
        (closed / "inner").mkdir(parents=True)
        closed.chmod(0o700)
        assert _unreachable(closed / "inner", uid=nobody) == closed
        closed.chmod(0o711)
        assert _unreachable(closed / "inner", uid=nobody) is None


@pytest.mark.parametrize("enclave", ["../beta", "alpha/../../etc", "Alpha", "", "a" * 64])
def test_spawner_refuses_an_enclave_name_that_would_leave_the_state_directory(
    enclave: str,
) -> None:
    with pytest.raises(SandboxConfigError, match="DNS-1123 label"):
        server_paths(state_dir="/srv/state", enclave=enclave, user_id=1, server_name="")


def test_spawner_paths_never_contain_the_user_name() -> None:
    paths = server_paths(state_dir="/srv/state", enclave="alpha", user_id=7, server_name="")
    assert paths == ServerPaths(
        home=Path("/srv/state/homes/alpha"),
        sockets=Path("/srv/state/sockets/alpha/u7"),
        stage=Path("/srv/state/stage/alpha/u7"),
        spool=Path("/srv/state/spools/alpha/u7"),
    )
    named = server_paths(state_dir="/srv/state", enclave="alpha", user_id=7, server_name="../x")
    assert named.sockets.parent == Path("/srv/state/sockets/alpha")
    assert named.sockets.name.startswith("u7-")


def test_spawner_refuses_a_relative_state_directory() -> None:
    with pytest.raises(SandboxConfigError, match="state_dir must be an absolute path"):
        server_paths(state_dir="state", enclave="alpha", user_id=1, server_name="")


def test_spawner_refuses_to_start_without_bubblewrap() -> None:
    with pytest.raises(SandboxConfigError, match="needs /nonexistent/bwrap, which is missing"):
        require_tools(paths=("/bin/sh", "/nonexistent/bwrap"))
    require_tools(paths=("/bin/sh",))
