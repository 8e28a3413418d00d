"""The portal's admin API as both backends use it: one client, one error type.

Called by ``controller.local`` (registering the enclaves its files declare) and
``controller.kube`` (keeping each Enclave resource's registration in step, ending a
closed enclave's members' sessions). The admin token travels only in the
Authorization header: never in a URL, an error message or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["PortalAdmin", "PortalAdminError"]


class PortalAdminError(Exception):
    """The portal refused a call or could not be reached; ``temporary``: a retry may help.

    ``status`` is the HTTP status of a refusal (None when there was no answer) and
    ``detail`` the portal's one sentence.
    """

    def __init__(
        self, message: str, *, temporary: bool, status: int | None = None, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.status = status
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class PortalAdmin:
    """The admin API at ``url`` with the bearer ``token`` (kept out of ``repr``)."""

    url: str
    token: str = field(repr=False)
    timeout_s: float = 15.0
    transport: httpx.BaseTransport | None = field(default=None, repr=False)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """One call; its JSON answer (None when empty, or a 404 with ``missing_ok``)."""
        try:
            with httpx.Client(timeout=self.timeout_s, transport=self.transport) as http:
                r = http.request(
                    method,
                    f"{self.url.rstrip('/')}{path}",
                    json=body,
                    params=params,
                    headers={"Authorization": f"Bearer {self.token}"},
                )
        except httpx.HTTPError as e:
            raise PortalAdminError(
                f"the portal at {self.url} is unreachable ({type(e).__name__})", temporary=True
            ) from None
        if missing_ok and r.status_code == 404:
            return None
        if r.status_code >= 400:
            try:
                detail = str(r.json().get("detail", r.text))
            except (ValueError, AttributeError):
                detail = r.text
            detail = detail[:300]
            raise PortalAdminError(
                f"the portal refused {method} {path} ({r.status_code}): {detail}",
                temporary=r.status_code >= 500 or r.status_code == 429,
                status=r.status_code,
                detail=detail,
            )
        try:
            return r.json() if r.content else None
        except ValueError:
            raise PortalAdminError(
                f"the portal answered {method} {path} with something that is not JSON",
                temporary=True,
            ) from None

    def enclave(self, *, name: str, client_id: str | None = None) -> dict[str, Any] | None:
        """Enclave ``name`` as the portal has it (with ``client_id``'s redirect URIs), or None."""
        params = {"client_id": client_id} if client_id else None
        found = self.request("GET", f"/api/admin/enclaves/{name}", params=params, missing_ok=True)
        return dict(found) if found is not None else None

    def register_enclave(self, *, name: str, registration: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /api/admin/enclaves/{name}``; the answer holds a client secret only when
        one was issued."""
        return dict(self.request("PUT", f"/api/admin/enclaves/{name}", body=registration))

    def remove_enclave(self, *, name: str) -> None:
        """Remove enclave ``name`` (its members' tokens for it are revoked); absent is fine."""
        self.request("DELETE", f"/api/admin/enclaves/{name}", missing_ok=True)

    def end_sessions(self, *, username: str, reason: str) -> int:
        """End every portal session of ``username``; how many were ended.

        A name the portal does not know has no sessions (0). Any other refusal,
        including a portal without this endpoint, is an error: nothing is assumed.
        """
        try:
            ended = self.request(
                "DELETE",
                f"/api/admin/users/{quote(username, safe='')}/sessions",
                params={"reason": reason[:128]},
            )
        except PortalAdminError as e:
            if e.status == 404 and e.detail.startswith("No user named"):
                return 0
            raise
        return int(ended["sessions_ended"])
