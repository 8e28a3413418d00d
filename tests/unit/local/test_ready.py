"""``wait_for_socket``: the sandbox spawner returns once the server's socket exists."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from controller.local._ready import wait_for_socket


def test_a_listening_socket_is_found(tmp_path: Path) -> None:
    path = tmp_path / "jupyter.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        found = asyncio.run(wait_for_socket(path=path, running=lambda: True, timeout_s=60))
    assert found is True


def test_a_server_that_exited_is_not_waited_for(tmp_path: Path) -> None:
    found = asyncio.run(
        wait_for_socket(path=tmp_path / "jupyter.sock", running=lambda: False, timeout_s=3600)
    )
    assert found is False


def test_no_socket_by_the_deadline_leaves_it_to_the_hub(tmp_path: Path) -> None:
    found = asyncio.run(
        wait_for_socket(path=tmp_path / "jupyter.sock", running=lambda: True, timeout_s=0)
    )
    assert found is False


def test_a_plain_file_or_a_link_in_its_place_is_not_a_socket(tmp_path: Path) -> None:
    """What the sandbox writes there is only lstat'ed: a file or a symlink to a real
    socket elsewhere does not count as the server listening."""
    (tmp_path / "file.sock").write_text("not a socket")
    elsewhere = tmp_path / "elsewhere.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(elsewhere))
        (tmp_path / "link.sock").symlink_to(elsewhere)
        for name in ("file.sock", "link.sock"):
            found = asyncio.run(
                wait_for_socket(path=tmp_path / name, running=lambda: True, timeout_s=0)
            )
            assert found is False, name
