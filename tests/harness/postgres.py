"""A real, disposable PostgreSQL server for tests and benchmarks.

Started per test session from Debian's ``postgresql`` binaries on a private Unix
socket directory and port (no TCP listener), as the ``postgres`` OS user when we run
as root (initdb refuses root). Always stopped by the owner (fixture finaliser or
context manager). Missing binaries raise :class:`PostgresMissing`, which fixtures turn
into a test FAILURE saying what to install; nothing is skipped.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from .common import free_port

__all__ = ["PgDatabase", "PostgresMissing", "PostgresServer", "find_pg_bin"]


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_pg_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (Debian layout, newest version)."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresMissing(
        "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
        "run `make setup` or `apt-get install postgresql`"
    )


@dataclass(frozen=True)
class PgDatabase:
    """One database on the test server: the owner's URL and the writer role's URL."""

    name: str
    admin_url: str
    writer_url: str
    writer_role: str


class PostgresServer:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager)."""

    WRITER_ROLE = "audit_writer"

    def __init__(self, *, fsync: bool = False):
        self.bin = find_pg_bin()
        self.fsync = fsync
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="enclave-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._started = False
        self._writer_created = False

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        self.sock.mkdir()
        self.data.mkdir()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.base, self.sock, self.data):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            self.base.chmod(0o755)
        self.data.chmod(0o700)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses='' -c max_connections=100"
        if not self.fsync:
            opts += " -c fsync=off -c full_page_writes=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60",
            "-l", str(self.base / "log"), "-o", opts, "start",
        )  # fmt: skip
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            # immediate: the server is disposable, and open test connections must not delay it
            self._run(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
            )
            self._started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, *, user: str = "postgres", db: str = "postgres") -> str:
        return f"postgresql://{user}@/{db}?host={self.sock}&port={self.port}"

    def psql(self, sql: str, *, db: str = "postgres") -> None:
        """Run SQL as the superuser (autocommit)."""
        import psycopg

        with psycopg.connect(self.url(db=db), autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self) -> PgDatabase:
        """A fresh database (and the shared writer role, created once)."""
        import psycopg
        from psycopg import sql

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            if not self._writer_created:
                row = conn.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (self.WRITER_ROLE,)
                ).fetchone()
                if row is None:
                    conn.execute(
                        sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(self.WRITER_ROLE))
                    )
                self._writer_created = True
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return PgDatabase(
            name=name,
            admin_url=self.url(db=name),
            writer_url=self.url(user=self.WRITER_ROLE, db=name),
            writer_role=self.WRITER_ROLE,
        )
