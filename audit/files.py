"""Durable file writes: the one place Enclave replaces or creates a small file on disk,
and the one check of a secret file an operator hands in.

Used for token files, key rings and signing keys, exported checkpoints and CLI output
(``audit`` and ``auth``). A reader never observes a file truncated or half-written, and
once a call returns the file survives power loss on a disk that honours fsync. Modelled
on tessera's ``storage/posix/file_ops.go``; never call ``open(..., "w")`` for such files.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["create_exclusive", "secret_file_problem", "write_atomic"]


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically.

    Steps: 1. create a new temporary file with ``mode`` beside ``path`` (same file
    system, so the rename is atomic); 2. write every byte and fsync it; 3. rename it
    over ``path``; 4. fsync the directory so the rename itself is durable. On any
    failure the temporary file is removed and ``path`` is left as it was.
    """
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask narrowed the open's mode; set it exactly
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


def create_exclusive(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data``; refuse (``FileExistsError``) if it exists.

    For secrets that must never be overwritten (a signing key): steps 1-2 of
    :func:`write_atomic` on ``path`` itself with ``O_EXCL``, then fsync the directory.
    A failure after creation removes the partial file.
    """
    directory = path.parent if str(path.parent) else Path(".")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


def secret_file_problem(path: Path, *, what: str, min_chars: int = 1) -> str | None:
    """Why the file holding ``what`` (e.g. "officer token") cannot be used, in one
    sentence, or None when it can: unreadable, readable by group or others, or (once
    stripped) shorter than ``min_chars``."""
    try:
        st = path.stat()
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        return f"cannot read the {what} file {path}: {e.strerror}"
    if st.st_mode & 0o077:
        return f"the {what} file {path} is readable by group or others; chmod 600 it"
    if not secret:
        return f"the {what} file {path} is empty"
    if len(secret) < min_chars:
        return f"the {what} in {path} is shorter than {min_chars} characters"
    return None
