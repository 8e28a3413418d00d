"""``enclave audit ...``: append, verify, checkpoint, proof, consistency, key, keygen,
tail, migrate (plus ``serve`` and ``token`` from :mod:`audit._service_cli`).

Exit codes: 0 success; 1 a failed check (``verify`` found a problem) or a store
failure; 2 bad input (one sentence on stderr naming what was wrong; for ``append``
the line number and field). This module only raises click exceptions; click exits.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import structlog

from . import _metrics as m
from ._events import MAX_EVENT_BYTES, Event, parse_event
from ._merkle import leaf_hash
from ._note import Verifier, generate_key, write_key_file
from ._verify import verify_store
from .errors import (
    AuditError,
    ConfigError,
    EventError,
    IntegrityError,
    KeyFileError,
    NoteError,
    ProofError,
    StoreError,
)
from .files import write_atomic
from .log import AuditLog, open_log, open_store

__all__ = ["audit"]

_STORE_HELP = "audit store URL: sqlite:///path/to/audit.db or postgresql://..."
_KEYFILE_ENV = "ENCLAVE_AUDIT_KEY_FILE"
_STORE_ENV = "ENCLAVE_AUDIT_STORE"
_PROGRESS_MIN = 100_000  # show progress on stderr for logs at least this big

F = TypeVar("F", bound=Callable[..., Any])


class _Failed(click.ClickException):
    """A failed check or store failure: exit code 1."""

    exit_code = 1


class _BadInput(click.ClickException):
    """Bad input: one sentence on stderr, exit code 2 (no usage banner)."""

    exit_code = 2


@contextmanager
def _errors() -> Iterator[None]:
    """Translate audit errors into click's exit codes (2 bad input, 1 failure)."""
    try:
        yield
    except (EventError, ConfigError, NoteError, KeyFileError, ProofError) as e:
        raise _BadInput(str(e)) from None
    except (StoreError, IntegrityError, AuditError) as e:
        raise _Failed(str(e)) from None


@contextmanager
def _opened(
    store_url: str, *, key_file: Path | None = None, create: bool = False
) -> Iterator[AuditLog]:
    with _errors():
        log = open_log(store_url, signer_key_path=key_file, create=create)
    try:
        with _errors():
            yield log
    finally:
        log.close()


def _store_option(f: F) -> F:
    return click.option("--store", "store_url", required=True, envvar=_STORE_ENV, help=_STORE_HELP)(
        f
    )


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit log."""
    if not structlog.is_configured():  # logs to stderr: stdout carries exact outputs
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


# -- append ------------------------------------------------------------------------------------
def _read_events(stream: IO[bytes]) -> list[Event]:
    events: list[Event] = []
    for n, raw in enumerate(stream, start=1):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        if len(line) > 2 * MAX_EVENT_BYTES:
            raise EventError(
                f"line is {len(line)} bytes, over the {MAX_EVENT_BYTES}-byte event limit", line=n
            )
        events.append(parse_event(line, line=n))
    return events


@audit.command("append")
@_store_option
@click.argument("source", type=click.File("rb"), default="-")
@click.option("--integrate/--no-integrate", default=True, help="also add the entries to the tree")
def append_cmd(store_url: str, source: IO[bytes], integrate: bool) -> None:
    """Append events from JSON lines (FILE or - for stdin), all or nothing.

    Every line is validated before anything is written; one bad line rejects the
    whole input (exit 2, naming the line and field).
    """
    with _errors():
        events = _read_events(source)
    with _opened(store_url, create=True) as log:
        idx = log.append(events)
        size = log.integrate() if integrate else log.size()
    out = {"appended": len(idx), "first": idx[0] if idx else None, "last": idx[-1] if idx else None}
    out["tree_size"] = size
    click.echo(json.dumps(out))


# -- verify ---------------------------------------------------------------------------------------
@audit.command("verify")
@_store_option
@click.option(
    "--key",
    "vkeys",
    multiple=True,
    help="verify signatures with this verifier key (name+hexid+base64) instead of the keys "
    "recorded in the store; repeatable (after a key rotation: the old and the new key)",
)
@click.option(
    "--strict",
    is_flag=True,
    help="for operators: refuse (exit 2) without --key, since keys read from the store "
    "being checked prove nothing against whoever can write it",
)
@click.option(
    "--against",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="an earlier checkpoint file kept elsewhere: prove the log extends it",
)
@click.option(
    "--progress/--no-progress", default=None, help="progress on stderr (default: big logs)"
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=64),
    default=None,
    help="processes scanning the log in parallel, each opening the store itself "
    "(default: 2 on logs over 131072 entries, at most the machine's cores; else 1)",
)
def verify_cmd(
    store_url: str,
    vkeys: tuple[str, ...],
    strict: bool,
    against: Path | None,
    progress: bool | None,
    workers: int | None,
) -> None:
    """Recompute every hash and check every signature; exit 0 intact, 1 with the first bad index.

    Without --key, signatures are checked against the keys the store itself records and
    the report says so; --strict then exits 2 instead, and exits 1 when the log has entries
    but no checkpoint signed by a given key.
    """
    if strict and not vkeys:
        raise _BadInput(
            "--strict needs --key: without it signatures are checked only against keys "
            "the store itself records, which whoever can write the store can replace."
        )
    with _errors():
        verifiers = [Verifier.parse(k) for k in vkeys] if vkeys else None
        against_text = against.read_bytes() if against else None
        store = open_store(store_url, create=False)
    try:
        with _errors():
            total = store.size()
            show = progress if progress is not None else total >= _PROGRESS_MIN

            def report(done: int, of: int) -> None:
                click.echo(f"verify: {done}/{of} entries ({100 * done // max(of, 1)}%)", err=True)

            result = verify_store(
                store,
                verifiers=verifiers,
                against=against_text,
                progress=report if show else None,
                workers=workers,
            )
    finally:
        store.close()
    if strict and result.ok and result.entries and not result.checkpoints:
        # Deleting every checkpoint leaves nothing signed to check the rewritten tree against.
        m.VERIFICATIONS.labels(result="failed").inc()
        click.echo(
            f"verify: FAILED (--strict): {result.entries} entries but no checkpoint signed "
            "by the given key; nothing proves the tree is the one the log published.",
            err=True,
        )
        click.get_current_context().exit(1)
    m.VERIFICATIONS.labels(result="ok" if result.ok else "failed").inc()
    if result.ok:
        click.echo(result.summary)
        return
    click.echo(f"verify: {result.summary}", err=True)
    for p in result.problems[1:]:
        click.echo(f"  also: {p}", err=True)
    click.get_current_context().exit(1)


# -- checkpoint -----------------------------------------------------------------------------------
@audit.command("checkpoint")
@_store_option
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=_KEYFILE_ENV,
    required=True,
    help="the signing key file (from `enclave audit keygen`)",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="also write the note here"
)
def checkpoint_cmd(store_url: str, key_file: Path, out: Path | None) -> None:
    """Integrate and sign a checkpoint covering every entry so far; print the exact note."""
    with _opened(store_url, key_file=key_file) as log:
        log.integrate()
        cp = log.checkpoint()
    if out is not None:
        write_atomic(out, cp.text.encode("utf-8"))
    click.echo(cp.text, nl=False)


# -- proofs ---------------------------------------------------------------------------------------
@audit.command("proof")
@_store_option
@click.option("--index", type=click.IntRange(min=0), required=True)
@click.option("--size", type=click.IntRange(min=1), help="tree size (default: the integrated size)")
def proof_cmd(store_url: str, index: int, size: int | None) -> None:
    """Inclusion proof of one entry, as JSON (bytes in base64)."""
    with _opened(store_url) as log:
        n = size if size is not None else log.size()
        if index >= n:
            raise ProofError(f"index {index} is not in the tree of size {n}")
        entry = log.entry(index)
        hashes = log.inclusion_proof(index, n)
        root = log.root_hash(n)
    click.echo(
        json.dumps(
            {
                "index": index,
                "size": n,
                "entry": _b64(entry),
                "leaf_hash": _b64(leaf_hash(entry)),
                "hashes": [_b64(h) for h in hashes],
                "root_hash": _b64(root),
            }
        )
    )


@audit.command("consistency")
@_store_option
@click.option("--old", type=click.IntRange(min=0), required=True)
@click.option("--size", type=click.IntRange(min=0), help="tree size (default: the integrated size)")
def consistency_cmd(store_url: str, old: int, size: int | None) -> None:
    """Consistency proof between two tree sizes, as JSON (hashes in base64)."""
    with _opened(store_url) as log:
        n = size if size is not None else log.size()
        hashes = log.consistency_proof(old, n)
        old_root, root = log.root_hash(old), log.root_hash(n)
    click.echo(
        json.dumps(
            {
                "old": old,
                "size": n,
                "hashes": [_b64(h) for h in hashes],
                "old_root_hash": _b64(old_root),
                "root_hash": _b64(root),
            }
        )
    )


# -- keys -----------------------------------------------------------------------------------------
@audit.command("key")
@_store_option
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), envvar=_KEYFILE_ENV)
def key_cmd(store_url: str, key_file: Path | None) -> None:
    """Print the log's verifier key (name+hexid+base64key)."""
    with _opened(store_url, key_file=key_file) as log:
        click.echo(log.verifier_key())


@audit.command("keygen")
@click.option(
    "--name", required=True, help="key name = checkpoint origin, e.g. audit.example.org/enclave"
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def keygen_cmd(name: str, out: Path) -> None:
    """Make a new Ed25519 signing key file (mode 0600; never overwrites); print its verifier key."""
    with _errors():
        signer = generate_key(name)
        write_key_file(out, signer)
    click.echo(signer.verifier.vkey)


# -- tail -----------------------------------------------------------------------------------------
@audit.command("tail")
@_store_option
@click.option("-n", "count", type=click.IntRange(min=0, max=100_000), default=10, show_default=True)
@click.option("--follow", "-f", is_flag=True, help="keep printing new entries as they arrive")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True)
def tail_cmd(store_url: str, count: int, follow: bool, interval: float) -> None:
    """Print the last entries as JSON lines (index, leaf fields)."""
    stop = threading.Event()
    with _opened(store_url) as log:
        end = log.sequenced()
        pos = max(0, end - count)
        while True:
            for row in log.store.entries(pos, end):
                idx, leaf = int(row[0]), bytes(row[9])
                d = json.loads(leaf)
                d["index"] = idx
                click.echo(json.dumps(d, ensure_ascii=False, sort_keys=True))
                sys.stdout.flush()
            pos = end
            if not follow:
                return
            while log.sequenced() == pos:
                if stop.wait(interval):
                    return
            end = log.sequenced()


# -- migrate --------------------------------------------------------------------------------------
@audit.command("migrate")
@_store_option
@click.option("--writer", help="PostgreSQL: the application role to grant SELECT and INSERT")
def migrate_cmd(store_url: str, writer: str | None) -> None:
    """Apply pending schema migrations (run as the store's owner)."""
    with _errors():
        store = open_store(store_url, create=True)
        try:
            if store.dialect == "postgres":
                from ._store_postgres import PostgresStore

                assert isinstance(store, PostgresStore)
                applied = store.migrate(writer=writer)
            else:
                if writer:
                    raise ConfigError("--writer applies to PostgreSQL stores only")
                applied = store.migrate()
            version = store.schema_version()
        finally:
            store.close()
    click.echo(json.dumps({"applied": applied, "schema_version": version}))


def _register_service_commands() -> None:
    from ._service_cli import serve, token

    audit.add_command(serve)
    audit.add_command(token)


_register_service_commands()

if __name__ == "__main__":  # pragma: no cover - `python -m audit.cli` without the root CLI
    audit(prog_name="enclave audit")
