"""Downloads refused at the server, and the audited contents API.

1. ``/files/...`` (with or without ``?download``) and ``/nbconvert/...`` answer 403
   (``DownloadRefusedHandler``), recorded before they answer.
2. Any other response carrying ``Content-Disposition: attachment`` is replaced by a
   recorded 403 as its headers are written, and every response gets
   ``Cache-Control: no-store`` (``NoDownloadTransform``).
3. The contents API (``AuditedContentsHandler``) records its events, refuses a
   dataset file's content over ``dataset_content_limit_bytes``, and counts each body
   it sends against the session's screen-output budget.
4. Terminals where the tier turns them off answer 403, recorded
   (``TerminalsRefusedHandler``).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.services.contents.handlers import ContentsHandler
from jupyter_server.utils import ensure_async
from tornado import httputil, web

from audit.client import ClientError

from ._recorder import REFUSED, EnclaveWorkspace, Recorder, clean, refuse
from ._screenguard import SCREEN_STILL_REFUSED, ScreenGuard

__all__ = [
    "NOT_SUBRESOURCE",
    "AuditedContentsHandler",
    "DownloadRefusedHandler",
    "NoDownloadTransform",
    "TerminalsRefusedHandler",
]

#: A contents path that does not end in /checkpoints, /checkpoints/ID or /trust.
NOT_SUBRESOURCE = r"(?!(?:/[^/]+)*/(?:checkpoints(?:/[^/]+)?|trust)$)"


class DownloadRefusedHandler(JupyterHandler):
    """``/files/...`` and ``/nbconvert/...``: file bytes as a file, refused for every method."""

    def initialize(self, route: str) -> None:
        self.route = route

    @web.authenticated
    def get(self, path: str = "") -> None:
        refuse(self, "workspace.download.refused", path=path[:4096], route=self.route)

    head = post = put = get


class TerminalsRefusedHandler(JupyterHandler):
    """Terminals where the tier turns them off: refused and recorded."""

    @web.authenticated
    def get(self, path: str = "") -> None:
        refuse(self, "workspace.terminal.refused", path=self.request.path)

    post = put = delete = get


class AuditedContentsHandler(ContentsHandler):
    """The contents API with its events recorded and dataset content capped."""

    _model: dict[str, Any] | None = None
    _metered = False
    _stop_after = False

    def _finish_model(self, model: dict[str, Any], location: bool = True) -> None:
        self._model = model
        self._metered = True  # the body finish() gets now is sent to the browser
        super()._finish_model(model, location=location)  # type: ignore[no-untyped-call]

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Any:
        """The model's body is counted as it is written; a read past the session's
        screen-output budget is refused instead (403 with the researcher's notice)."""
        if self._metered and isinstance(chunk, str | bytes):
            self._metered = False
            guard: ScreenGuard = self.settings["enclave_screen"]
            size = len(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            decision = guard.meter.offer(
                channel="contents", size=size, refusable=self.request.method == "GET"
            )
            notice = guard.settle(decision, channel="contents", ip=self.request.remote_ip)
            if not decision.send:
                self._stop_after = True
                raise web.HTTPError(403, (notice or SCREEN_STILL_REFUSED).strip())
        return super().finish(chunk)

    def on_finish(self) -> None:
        super().on_finish()
        if self._stop_after:
            self.settings["enclave_screen"].stop_session()

    def _note(self, action: str, **details: Any) -> None:
        if self.get_status() < 400:
            recorder: Recorder = self.settings["enclave_recorder"]
            recorder.done(action, actor=None, ip=self.request.remote_ip, **clean(details))

    def _in_dataset(self, path: str) -> bool:
        config: EnclaveWorkspace = self.settings["enclave_config"]
        p = PurePosixPath("/", path.strip("/"))
        return any(
            p == (d := PurePosixPath("/", ds.strip("/"))) or d in p.parents
            for ds in config.dataset_paths
        )

    @web.authenticated
    async def get(self, path: str = "") -> None:
        path = (path or "").strip("/")
        wants_content = self.get_query_argument("content", default="1") != "0"
        if wants_content and self._in_dataset(path):
            meta = await ensure_async(self.contents_manager.get(path=path, content=False))  # type: ignore[no-untyped-call]
            limit = self.settings["enclave_config"].dataset_content_limit_bytes
            size = meta.get("size")
            if meta.get("type") != "directory" and (not isinstance(size, int) or size > limit):
                refuse(
                    self,
                    "workspace.download.refused",
                    path=path[:4096],
                    route="contents",
                    reason=f"a dataset file over {limit} bytes",
                )
        await super().get(path)  # type: ignore[misc]
        model = self._model or {}
        if wants_content and model.get("type") in ("file", "notebook"):
            size = model.get("size")
            extra = {"bytes": size} if isinstance(size, int) else {}
            self._note("workspace.file.get", path=path[:4096], **extra)

    async def patch(self, path: str = "") -> None:
        path = path.strip("/")
        await super().patch(path)  # type: ignore[misc]
        new_path = str((self._model or {}).get("path", ""))
        self._note("workspace.file.renamed", path=path[:4096], new_path=new_path[:4096])

    async def _copy(self, copy_from: str, copy_to: str | None = None) -> None:
        await super()._copy(copy_from, copy_to)  # type: ignore[no-untyped-call]
        new_path = str((self._model or {}).get("path", ""))
        self._note("workspace.file.copied", path=copy_from[:4096], new_path=new_path[:4096])

    async def _new_untitled(self, path: str, type: str = "", ext: str = "") -> None:
        await super()._new_untitled(path, type=type, ext=ext)  # type: ignore[no-untyped-call]
        model = self._model or {}
        self._note(
            "workspace.file.created",
            path=str(model.get("path", path))[:4096],
            type=str(model.get("type", ""))[:32],
        )

    async def _upload(self, model: dict[str, Any], path: str) -> None:
        chunk = model.get("chunk")
        await super()._upload(model, path)  # type: ignore[no-untyped-call]
        if chunk not in (None, -1):
            return  # the first of several chunks: the last one records the upload
        if model.get("format") == "base64":
            self._note("workspace.file.uploaded", path=path[:4096], **self._size())
        else:
            self._note("workspace.file.created", path=path[:4096], type=str(model.get("type")))

    async def _save(self, model: dict[str, Any], path: str) -> None:
        chunk = model.get("chunk")
        await super()._save(model, path)  # type: ignore[no-untyped-call]
        if chunk is None:
            self._note("workspace.file.put", path=path[:4096], **self._size())
        elif chunk == -1:
            self._note("workspace.file.uploaded", path=path[:4096], **self._size())

    async def delete(self, path: str = "") -> None:
        path = path.strip("/")
        await super().delete(path)  # type: ignore[misc]
        self._note("workspace.file.delete", path=path[:4096])

    def _size(self) -> dict[str, int]:
        size = (self._model or {}).get("size")
        return {"bytes": size} if isinstance(size, int) else {}


class NoDownloadTransform(web.OutputTransform):
    """Every response: ``Cache-Control: no-store``; an attachment becomes a recorded 403."""

    recorder: Recorder | None = None

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        self.request = request
        self.refused = False

    def transform_first_chunk(
        self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, httputil.HTTPHeaders, bytes]:
        headers["Cache-Control"] = "no-store"
        disposition = headers.get("Content-Disposition", "")
        if "attachment" not in disposition.lower():
            return status_code, headers, chunk
        self.refused = True
        body = REFUSED.encode()
        recorder = type(self).recorder
        try:
            if recorder is None:
                raise ClientError("no audit client")
            recorder.refused(
                "workspace.download.refused",
                actor=None,
                ip=self.request.remote_ip,
                path=self.request.path[:4096],
                route="attachment",
            )
            status = 403
        except ClientError:
            status = 503
        clean = httputil.HTTPHeaders()
        clean["Content-Type"] = "text/plain; charset=utf-8"
        clean["Content-Length"] = str(len(body))
        clean["Cache-Control"] = "no-store"
        return status, clean, body

    def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
        return b"" if self.refused else chunk
