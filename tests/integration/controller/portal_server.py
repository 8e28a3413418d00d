"""The real portal for the controller's tests: the app served by uvicorn on a loopback port.

``PortalServer.stop()`` and ``start()`` again on the same port (same store) make an
outage. ``browser()`` is an HTTP client that browses ``https://localhost`` as a
researcher's browser would, its requests carried to the plain-HTTP loopback port, so
the portal's ``__Host-`` Secure cookies are kept and sent back.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import uvicorn

from auth import MemoryAuditSink, create_app
from tests.harness.audit_service import free_port
from tests.integration.auth.helpers import ADMIN_TOKEN, FakeClock, make_portal

__all__ = ["PortalServer"]


class _Loopback(httpx.BaseTransport):
    """Carries each request to ``http://127.0.0.1:PORT``; the client still sees the
    ``https://localhost`` URL, so its cookie jar behaves as on a secure origin."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port)
        inner = httpx.Request(
            request.method,
            url,
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return self._inner.handle_request(inner)

    def close(self) -> None:
        self._inner.close()


class PortalServer:
    """One portal (its store under ``tmp``), time from a fake clock (TOTP steps are chosen)."""

    def __init__(self, tmp: Path) -> None:
        self.clock = FakeClock()
        tmp.mkdir(parents=True, exist_ok=True)
        portal, sink = make_portal(tmp, clock=self.clock)
        assert isinstance(sink, MemoryAuditSink)
        self.portal, self.sink = portal, sink
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ADMIN_TOKEN
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> PortalServer:
        config = uvicorn.Config(
            create_app(portal=self.portal), host="127.0.0.1", port=self.port, log_level="error"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive(), f"the portal could not serve on port {self.port}"
            assert time.monotonic() < deadline, "the portal did not start within 30 s"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(30)
            assert not self._thread.is_alive(), "the portal did not stop within 30 s"
        self._server = self._thread = None

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url="https://localhost", transport=_Loopback(self.port))

    def actions(self) -> list[str]:
        return [str(e["action"]) for e in self.sink.events]
