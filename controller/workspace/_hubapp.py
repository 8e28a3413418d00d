"""An enclave's JupyterHub, running jupyterhub-idle-culler on its own event loop.

The local backend starts each hub as ``python -m controller.workspace._hub``, which
runs :class:`EnclaveHub`. With ``EnclaveHub.idle_culler`` set (``make_hub_config``
does for an in-process site), the hub runs the culler's own ``cull_idle`` every
``every`` seconds, as ``python -m jupyterhub_idle_culler`` would in a process of
its own: through the hub's REST API, as the ``idle-culler`` service with its role's
scopes, at the tier's idle and session limits. Measured: the culler's process cost
each idle enclave 30.6 MB of resident memory; in the hub it adds nothing measurable
(the hub has already imported everything the culler uses).

The service's token is made at each start, lives only in this process and is never
written anywhere; the tokens of earlier starts are deleted from the hub's database.
"""

from __future__ import annotations

import secrets
from functools import partial
from typing import Any

from jupyterhub import orm
from jupyterhub.app import JupyterHub
from jupyterhub_idle_culler import cull_idle
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Dict
from traitlets.config import Application

__all__ = ["CULLER_SERVICE", "EnclaveHub", "main", "require_enclave_hub"]

CULLER_SERVICE = "idle-culler"
_SETTINGS = frozenset({"url", "timeout", "max_age", "every"})


def require_enclave_hub() -> None:
    """Stop a hub that is not an :class:`EnclaveHub` from loading a configuration that
    relies on one (plain ``jupyterhub`` would serve with nobody culling idle sessions)."""
    if Application.initialized() and not isinstance(Application.instance(), EnclaveHub):
        raise SystemExit(
            "this hub configuration culls idle sessions inside the hub: "
            "start it with 'python -m controller.workspace._hub', not 'jupyterhub'"
        )


class EnclaveHub(JupyterHub):  # type: ignore[misc]
    """JupyterHub with its idle culler in-process; see the module docstring."""

    idle_culler = Dict(
        config=True,
        help="""jupyterhub-idle-culler's settings, run in the hub's process:
        url (the hub's API), timeout and max_age (seconds), every (seconds).
        Empty: no culler in the hub.""",
    )

    _culler_token = ""
    _culler: PeriodicCallback | None = None

    def init_services(self) -> None:
        if self.idle_culler:
            missing = _SETTINGS - set(self.idle_culler)
            if missing:
                raise ValueError(f"EnclaveHub.idle_culler lacks {', '.join(sorted(missing))}")
            if not any(s.get("name") == CULLER_SERVICE for s in self.services):
                raise ValueError(f"EnclaveHub.idle_culler needs the {CULLER_SERVICE!r} service")
            self._culler_token = secrets.token_hex(32)
            self.services = [
                {**s, "api_token": self._culler_token} if s.get("name") == CULLER_SERVICE else s
                for s in self.services
            ]
        super().init_services()

    async def init_api_tokens(self) -> None:
        await super().init_api_tokens()
        if not self._culler_token:
            return
        current = orm.APIToken.find(self.db, self._culler_token)
        service = orm.Service.find(self.db, CULLER_SERVICE)
        stale = [t for t in service.api_tokens if current is None or t.id != current.id]
        for token in stale:
            self.db.delete(token)
        self.db.commit()
        if stale:
            self.log.info("Deleted %d token(s) of earlier starts' idle cullers", len(stale))

    async def start(self) -> None:
        await super().start()
        if not self._culler_token:
            return
        settings: dict[str, Any] = self.idle_culler
        cull = partial(
            cull_idle,
            url=settings["url"],
            api_token=self._culler_token,
            inactive_limit=int(settings["timeout"]),
            max_age=int(settings["max_age"]),
            logger=self.log.getChild("idle-culler"),  # the hub's log, marked as the culler's
        )
        IOLoop.current().add_callback(cull)  # as the culler's own start does: once now
        self._culler = PeriodicCallback(cull, 1e3 * int(settings["every"]))
        self._culler.start()
        self.log.info(
            "Idle culler in the hub: idle after %ss, at most %ss, every %ss",
            settings["timeout"],
            settings["max_age"],
            settings["every"],
        )

    async def cleanup(self) -> None:
        if self._culler is not None:
            self._culler.stop()
            self._culler = None
        await super().cleanup()


def main() -> Any:
    return EnclaveHub.launch_instance()
