"""The workspace's settings and how its events reach the audit intake.

Used by the server extension's handlers (``serverext`` wires them): ``Recorder``
sends this workspace's events (``source=workspace``) through the spooled audit
client; ``refuse`` records a refusal durably before it is answered, and never lets
one go unrecorded (503 when it cannot be recorded).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from tornado import web
from traitlets import Int, List, TraitError, Unicode, validate
from traitlets.config import Configurable

from audit import Event
from audit.client import AuditClient, ClientError

__all__ = [
    "REFUSED",
    "EnclaveWorkspace",
    "Recorder",
    "clean",
    "kernel_listener",
    "refuse",
]

#: What a refused download answers (403).
REFUSED = (
    "Downloads are disabled in this enclave: data stays on the server. "
    "Ask for an export through the airlock instead."
)


class EnclaveWorkspace(Configurable):
    """The workspace's enclave, tier and audit intake (set by the hub's spawner)."""

    enclave = Unicode(config=True, help="The enclave this workspace belongs to.")
    tier = Unicode(config=True, help="The enclave's tier id in the policies catalog.")
    audit_url = Unicode(config=True, help="The audit service's base URL.")
    audit_token_file = Unicode(
        config=True, help="This workspace's intake token (source=workspace, its enclave), 0600."
    )
    audit_spool = Unicode(config=True, help="The audit client's durable spool file.")
    dataset_paths = List(
        Unicode(),
        config=True,
        help="Dataset mount points, relative to the server's root directory.",
    )
    dataset_content_limit_bytes = Int(
        1024 * 1024,
        config=True,
        help="Largest dataset file whose content the contents API returns (bytes). "
        "Not yet a catalog control: one value for every tier until it is.",
    )
    tier_overlay = Unicode(
        "",
        config=True,
        help="The operator's tier overlay file (it can only tighten tiers), as the "
        "controller loads it; empty: the built-in catalog.",
    )
    screen_report_interval_s = Int(
        300,
        config=True,
        help="Seconds between the workspace.screen_output records of bytes sent to the "
        "browser (written only when the counts changed; one more as the server stops). "
        "Five minutes: an officer sees a session's screen traffic while it runs without "
        "one record per cell.",
    )

    @validate("screen_report_interval_s")
    def _positive_interval(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        if value < 1:
            raise TraitError(f"screen_report_interval_s must be at least 1 second, not {value}")
        return value


class Recorder:
    """Sends this workspace's events; ``refused`` is durable or raises ``ClientError``."""

    def __init__(self, *, config: EnclaveWorkspace, client: AuditClient, owner: str) -> None:
        self.config = config
        self.client = client
        self.owner = owner

    def _event(
        self, action: str, outcome: str, actor: str | None, ip: str | None, details: dict[str, Any]
    ) -> Event:
        return Event.new(
            source="workspace",
            actor=actor or self.owner,
            action=action,
            outcome=outcome,
            enclave=self.config.enclave,
            client_ip=ip,
            details=details,
        )

    def done(self, action: str, *, actor: str | None, ip: str | None, **details: Any) -> None:
        self.client.emit(self._event(action, "success", actor, ip, details))

    def refused(self, action: str, *, actor: str | None, ip: str | None, **details: Any) -> None:
        self.client.record(self._event(action, "denied", actor, ip, details))

    def kept(self, action: str, *, actor: str | None, ip: str | None, **details: Any) -> None:
        """A success event recorded durably (``record``): raises ``ClientError`` if not."""
        self.client.record(self._event(action, "success", actor, ip, details))


def clean(details: dict[str, Any]) -> dict[str, Any]:
    """Paths as the contents API names them: relative to the root, no leading slash."""
    return {
        k: v.strip("/")[:4096] if k in ("path", "new_path") and isinstance(v, str) else v
        for k, v in details.items()
    }


def refuse(handler: JupyterHandler, action: str, **details: Any) -> None:
    """Record the refusal durably, then answer 403 (503 if it cannot be recorded)."""
    recorder: Recorder = handler.settings["enclave_recorder"]
    details = clean(details)
    try:
        recorder.refused(action, actor=None, ip=handler.request.remote_ip, **details)
    except ClientError as e:
        handler.log.error("a refusal could not be recorded: %s", e)
        raise web.HTTPError(503, "refused, and the refusal could not be recorded") from None
    raise web.HTTPError(403, REFUSED if action == "workspace.download.refused" else "refused")


def kernel_listener(recorder: Recorder) -> Callable[..., Awaitable[None]]:
    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        if data.get("status") != "success":
            return
        action = {"start": "workspace.kernel.started", "shutdown": "workspace.kernel.stopped"}
        name = action.get(str(data.get("action")))
        if name is None:
            return
        details = {"kernel_id": str(data.get("kernel_id", ""))[:128]}
        if name == "workspace.kernel.started":
            details["kernel"] = str(data.get("kernel_name", ""))[:128]
        recorder.done(name, actor=None, ip=None, **details)

    return listener
