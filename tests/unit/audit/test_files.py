"""The one durable-write helper (audit.files): atomic, complete, private, exclusive."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from audit import files


def test_a_short_writing_disk_still_gets_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def short_writes(fd: int, data: bytes | memoryview) -> int:  # one byte per call
        return real_write(fd, bytes(data[:1]))

    monkeypatch.setattr(files.os, "write", short_writes)
    target = tmp_path / "tokens.json"
    files.write_atomic(target, b"0123456789" * 50)
    assert target.read_bytes() == b"0123456789" * 50


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "keyring.json"
    target.write_bytes(b"old")

    def disk_full(fd: int, data: bytes | memoryview) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        files.write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.json"]


def test_the_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        files.write_atomic(tmp_path / "a", b"x")
        files.write_atomic(tmp_path / "b", b"x", mode=0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o640


def test_create_exclusive_never_overwrites(tmp_path: Path) -> None:
    key = tmp_path / "signing.key"
    files.create_exclusive(key, b"secret")
    with pytest.raises(FileExistsError):
        files.create_exclusive(key, b"other")
    assert key.read_bytes() == b"secret"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
