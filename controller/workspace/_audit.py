"""How the hub and the single-user server reach the audit intake: one spooled client each.

The intake token is read from a file (never argv or a URL) that only its owner may
read; events go through the audit client's durable spool, so an outage of the
audit service loses nothing and ``record`` fails closed.
"""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from audit.client import AuditClient

from .errors import SpecError

__all__ = ["open_audit_client", "read_secret_file"]

_clients: dict[tuple[str, str, str], AuditClient] = {}
_lock = threading.Lock()


def read_secret_file(path: Path, *, what: str) -> str:
    """The stripped text of ``path``; refused when missing, empty or readable by others."""
    try:
        st = path.stat()
        text = path.read_text().strip()
    except OSError as e:
        raise SpecError(f"{what} {path} cannot be read: {e.strerror}", field=what) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SpecError(f"{what} {path} is readable by others than its owner", field=what)
    if not text:
        raise SpecError(f"{what} {path} is empty", field=what)
    return text


def open_audit_client(*, url: str, token_file: Path, spool: Path, source: str) -> AuditClient:
    """This process's client for ``source`` events (one per url and spool, reused)."""
    key = (url, str(spool), source)
    with _lock:
        client = _clients.get(key)
        if client is None:
            token = read_secret_file(token_file, what="the audit token file")
            client = AuditClient.http(url=url, token=token, spool_path=spool, source=source)
            _clients[key] = client
        return client
