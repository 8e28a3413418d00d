"""The hardened single-user server, in a real ``jupyter-server`` process.

Each server gets the extension exactly as the hub's spawner enables it, a workspace
intake token bound to its enclave, and a real audit service; events are read back
from the audit store.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from audit.tokens import TokenStore
from controller.workspace._hubconfig import LAB_SETTINGS_DIR
from tests.harness.aio import run_coroutine
from tests.harness.audit_service import ServiceProcess, free_port

from .conftest import stop_process, wait_for_event, wait_until_answers
from .leaky_attachment_extension import SECRET_ROWS

DATASET = "data/microbiome-16s"
LIMIT = 1000


@dataclass
class Server:
    url: str
    token: str
    root: Path
    enclave: str
    proc: subprocess.Popen[bytes]

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"token {self.token}"}, timeout=30
        )


def _write_config(path: Path, *layers: dict[str, dict[str, Any]]) -> None:
    """A config file setting each class's traits, later layers over earlier ones."""
    lines = ["c = get_config()  # noqa"]
    for settings in layers:
        for cls, traits in settings.items():
            lines += [f"c.{cls}.{k} = {v!r}" for k, v in traits.items()]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def start_server(
    audit_service: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Server]]:
    """``start_server(enclave, tier, extensions, more)``: a jupyter-server with the
    hardened extension (and ``extensions``, and ``more`` settings by class), polled until
    it answers."""
    servers: list[Server] = []

    def start(
        *,
        enclave: str,
        tier: str,
        extensions: tuple[str, ...] = (),
        with_token: bool = True,
        more: dict[str, dict[str, Any]] | None = None,
    ) -> Server:
        d = tmp_path_factory.mktemp(f"server-{enclave}")
        root = d / "home"
        (root / DATASET).mkdir(parents=True)
        (root / DATASET / "genus_abundance.tsv").write_bytes(b"genus\tP001\n" * 500)
        (root / DATASET / "README.txt").write_text("synthetic, obviously fake\n")
        (root / "results.csv").write_text("genus,mean\nBacteroides,0.31\n")
        token = TokenStore(path=audit_service.env.tokens_path).issue(
            source="workspace", label=f"workspace {enclave}", enclave=enclave
        )
        if with_token:
            (d / "audit_token").write_text(token.token)
            (d / "audit_token").chmod(0o600)
        port, api_token = free_port(), secrets.token_hex(24)
        _write_config(
            d / "jupyter_server_config.py",
            {
                "ServerApp": {
                    "jpserver_extensions": {
                        "controller.workspace.serverext": True,
                        **dict.fromkeys(extensions, True),
                    },
                    "reraise_server_extension_failures": True,
                    "root_dir": str(root),
                    "ip": "127.0.0.1",
                    "port": port,
                    "port_retries": 0,
                    "open_browser": False,
                    "allow_root": True,  # the test runs as root; workspaces never do
                },
                "IdentityProvider": {"token": api_token},
                "LabApp": {"app_settings_dir": str(LAB_SETTINGS_DIR)},
                "EnclaveWorkspace": {
                    "enclave": enclave,
                    "tier": tier,
                    "audit_url": audit_service.url,
                    "audit_token_file": str(d / "audit_token"),
                    "audit_spool": str(d / "audit-spool.db"),
                    "dataset_paths": [DATASET],
                    "dataset_content_limit_bytes": LIMIT,
                },
            },
            more or {},
        )
        log = (d / "server.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", f"--config={d / 'jupyter_server_config.py'}"],
            cwd=Path(__file__).resolve().parents[3],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                "PATH": str(Path(sys.executable).parent),
                "HOME": str(d),
                "JUPYTERHUB_USER": "r.tanaka",
            },
        )
        log.close()
        server = Server(f"http://127.0.0.1:{port}", api_token, root, enclave, proc)
        servers.append(server)
        wait_until_answers(proc, server.url + "/api/status", log=d / "server.log", ok=(200, 403))
        return server

    yield start
    for s in servers:
        stop_process(s.proc)


@pytest.fixture(scope="module")
def standard(start_server: Callable[..., Server]) -> Server:
    return start_server(
        enclave="ws-std",
        tier="nbdc-standard",
        extensions=("tests.integration.workspace.leaky_attachment_extension",),
    )


@pytest.fixture(scope="module")
def strong(start_server: Callable[..., Server]) -> Server:
    return start_server(enclave="ws-strong", tier="tommo-strong")


def _event(audit: ServiceProcess, server: Server, action: str, **details: Any) -> dict[str, Any]:
    return wait_for_event(
        audit.env,
        source="workspace",
        match=lambda e: (
            e["action"] == action
            and e["enclave"] == server.enclave
            and all(e["details"].get(k) == v for k, v in details.items())
        ),
    )


@pytest.mark.parametrize("query", ["", "?download=1", "?download=0"])
def test_files_download_is_refused_at_the_server(
    standard: Server, audit_service: ServiceProcess, query: str
) -> None:
    with standard.http() as h:
        r = h.get("/files/results.csv" + query)
    assert r.status_code == 403
    assert b"Bacteroides" not in r.content
    ev = _event(audit_service, standard, "workspace.download.refused", route="files")
    assert ev["details"]["path"] == "results.csv"
    assert ev["actor"] == "r.tanaka"
    assert ev["outcome"] == "denied"


def test_nbconvert_export_is_refused_at_the_server(
    standard: Server, audit_service: ServiceProcess
) -> None:
    nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    with standard.http() as h:
        assert h.put("/api/contents/analysis.ipynb", json={"type": "notebook", "content": nb})
        for url in (
            "/nbconvert/html/analysis.ipynb?download=true",
            "/nbconvert/script/analysis.ipynb",
        ):
            assert h.get(url).status_code == 403
    _event(audit_service, standard, "workspace.download.refused", route="nbconvert")


def test_attachment_from_any_handler_is_refused(
    standard: Server, audit_service: ServiceProcess
) -> None:
    with standard.http() as h:
        r = h.get("/leak")
    assert r.status_code == 403
    assert "content-disposition" not in r.headers
    assert SECRET_ROWS[:20] not in r.content
    _event(audit_service, standard, "workspace.download.refused", route="attachment", path="/leak")


def test_browser_caching_is_off_on_every_response(standard: Server) -> None:
    with standard.http() as h:
        for url in ("/api/status", "/api/contents", "/api/contents/results.csv", "/files/x"):
            assert h.get(url).headers["cache-control"] == "no-store", url


def test_dataset_file_over_the_tier_limit_is_refused_through_the_contents_api(
    standard: Server, audit_service: ServiceProcess
) -> None:
    path = f"{DATASET}/genus_abundance.tsv"
    with standard.http() as h:
        r = h.get(f"/api/contents/{path}")
        assert r.status_code == 403
        assert "P001" not in r.text
        meta = h.get(f"/api/contents/{path}?content=0")
        assert meta.status_code == 200
        assert meta.json()["size"] > LIMIT
        small = h.get(f"/api/contents/{DATASET}/README.txt")
        assert small.status_code == 200
        assert "obviously fake" in small.json()["content"]
    _event(audit_service, standard, "workspace.download.refused", route="contents", path=path)
    _event(audit_service, standard, "workspace.file.get", path=f"{DATASET}/README.txt")


def test_contents_events_are_recorded(standard: Server, audit_service: ServiceProcess) -> None:
    with standard.http() as h:
        assert (
            h.put(
                "/api/contents/notes.txt", json={"type": "file", "format": "text", "content": "a"}
            ).status_code
            == 201
        )
        assert (
            h.put(
                "/api/contents/notes.txt", json={"type": "file", "format": "text", "content": "ab"}
            ).status_code
            == 200
        )
        upload = base64.b64encode(b"genus,count\n").decode()
        assert (
            h.put(
                "/api/contents/upload.csv",
                json={"type": "file", "format": "base64", "content": upload},
            ).status_code
            == 201
        )
        created = h.post("/api/contents", json={"type": "notebook"})
        assert created.status_code == 201
        assert h.post("/api/contents", json={"copy_from": "notes.txt"}).status_code == 201
        assert h.patch("/api/contents/notes.txt", json={"path": "renamed.txt"}).status_code == 200
        assert h.get("/api/contents/renamed.txt").status_code == 200
        assert h.delete("/api/contents/renamed.txt").status_code == 204
    _event(audit_service, standard, "workspace.file.created", path="notes.txt")
    _event(audit_service, standard, "workspace.file.put", path="notes.txt", bytes=2)
    _event(audit_service, standard, "workspace.file.uploaded", path="upload.csv")
    _event(audit_service, standard, "workspace.file.created", path=created.json()["path"])
    _event(audit_service, standard, "workspace.file.copied", path="notes.txt")
    _event(
        audit_service, standard, "workspace.file.renamed", path="notes.txt", new_path="renamed.txt"
    )
    _event(audit_service, standard, "workspace.file.get", path="renamed.txt")
    ev = _event(audit_service, standard, "workspace.file.delete", path="renamed.txt")
    assert ev["actor"] == "r.tanaka"


def test_checkpoints_and_trust_keep_their_own_handlers(standard: Server) -> None:
    """The audited contents route must not swallow ``.../checkpoints`` and ``.../trust``:
    JupyterLab lists a notebook's checkpoints as it opens it and refuses to open the
    notebook when that fails (found by tests/e2e/test_researcher_journey.py)."""
    with standard.http() as h:
        nb = h.post("/api/contents", json={"type": "notebook"}).json()["path"]
        listed = h.get(f"/api/contents/{nb}/checkpoints")
        assert listed.status_code == 200, listed.text
        assert isinstance(listed.json(), list)
        made = h.post(f"/api/contents/{nb}/checkpoints")
        assert made.status_code == 201, made.text
        assert made.json() in h.get(f"/api/contents/{nb}/checkpoints").json()
        trusted = h.post(f"/api/contents/{nb}/trust")
        assert trusted.status_code == 201, trusted.text


def test_kernel_start_and_stop_are_recorded(
    standard: Server, audit_service: ServiceProcess
) -> None:
    with standard.http() as h:
        r = h.post("/api/kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        kernel_id = r.json()["id"]
        assert h.delete(f"/api/kernels/{kernel_id}").status_code == 204
    ev = _event(audit_service, standard, "workspace.kernel.started", kernel_id=kernel_id)
    assert ev["details"]["kernel"] == "python3"
    _event(audit_service, standard, "workspace.kernel.stopped", kernel_id=kernel_id)


def test_terminals_are_refused_where_the_tier_turns_them_off(
    strong: Server, audit_service: ServiceProcess
) -> None:
    with strong.http() as h:
        assert h.post("/api/terminals").status_code == 403
        assert h.get("/terminals/1").status_code == 403
    _event(audit_service, strong, "workspace.terminal.refused", path="api/terminals")


def test_workspace_without_its_audit_token_does_not_start(
    start_server: Callable[..., Server],
) -> None:
    # fail closed: a workspace that cannot record its events does not serve at all
    with pytest.raises(RuntimeError, match="exited") as e:
        start_server(enclave="ws-bad", tier="nbdc-standard", with_token=False)
    assert "audit token file" in str(e.value)


def test_jupyterlab_hides_download_and_export_menu_items(standard: Server) -> None:
    # best effort in the browser; the server refuses these paths anyway (tests above)
    with standard.http() as h:
        page = h.get("/lab")
    assert page.status_code == 200
    m = re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page.text, re.S
    )
    assert m, "no page config in /lab"
    disabled = json.loads(m.group(1))["disabledExtensions"]
    for plugin in (
        "@jupyterlab/docmanager-extension:download",
        "@jupyterlab/filebrowser-extension:download",
        "@jupyterlab/filebrowser-extension:open-browser-tab",
        "@jupyterlab/notebook-extension:export",
    ):
        assert plugin in disabled


def _execute_over_websocket(server: Server, kernel_id: str, code: str) -> dict[str, Any]:
    """Send one execute_request as JupyterLab does (kernel channels websocket, the v1
    binary protocol) and return the kernel's execute_reply content."""

    def frame(msg: dict[str, Any]) -> bytes:
        parts = [b"shell"] + [
            json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")
        ]
        offsets = [8 * (len(parts) + 2)]
        for p in parts:
            offsets.append(offsets[-1] + len(p))
        head = len(offsets).to_bytes(8, "little") + b"".join(
            o.to_bytes(8, "little") for o in offsets
        )
        return head + b"".join(parts)

    async def run() -> dict[str, Any]:
        url = server.url.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels"
        ws = await websocket_connect(
            HTTPRequest(url, headers={"Authorization": f"token {server.token}"}),
            subprotocols=["v1.kernel.websocket.jupyter.org"],
        )
        msg_id = secrets.token_hex(8)
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "r.tanaka",
            "session": secrets.token_hex(8),
            "version": "5.3",
            "date": "2026-12-04T00:00:00Z",
        }
        content = {"code": code, "silent": False, "store_history": True, "allow_stdin": False}
        await ws.write_message(
            frame({"header": header, "parent_header": {}, "metadata": {}, "content": content}),
            binary=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.read_message(), deadline - time.monotonic())
            assert isinstance(raw, bytes), "the websocket closed"
            n = int.from_bytes(raw[:8], "little")
            offs = [int.from_bytes(raw[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(n)]
            parts = [raw[offs[i] : offs[i + 1]] for i in range(n - 1)]
            reply_header, parent = json.loads(parts[1]), json.loads(parts[2])
            if reply_header["msg_type"] == "execute_reply" and parent.get("msg_id") == msg_id:
                ws.close()
                reply: dict[str, Any] = json.loads(parts[4])
                return reply
        raise AssertionError("no execute_reply within 60 s")

    return run_coroutine(run())


def test_each_code_execution_is_recorded_where_the_tier_records_every_operation(
    strong: Server, audit_service: ServiceProcess
) -> None:
    code = "total = sum(range(10))\nprint('genus', total)\n" + "# pad\n" * 3000
    with strong.http() as h:
        r = h.post("/api/kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        kernel_id = r.json()["id"]
        try:
            assert _execute_over_websocket(strong, kernel_id, code)["status"] == "ok"
        finally:
            h.delete(f"/api/kernels/{kernel_id}")
    digest = hashlib.sha256(code.encode()).hexdigest()
    ev = _event(audit_service, strong, "workspace.code.executed", sha256=digest)
    assert ev["details"]["kernel_id"] == kernel_id
    assert ev["details"]["bytes"] == len(code.encode())
    assert ev["details"]["code"] == code[:8192]
    assert len(code) > 8192  # the record is capped; the hash covers it all
