"""The officer UI: server-rendered pages over the audit service (no build step).

Mounted on the service's app by ``audit.server.create_app`` (what ``enclave audit
serve`` runs); it builds on ``audit.service``, never the other way round. Every page
needs an officer session and every page that shows records appends an ``audit.read``
event first. It never writes any other entry and never serves a script inline (strict
CSP).
"""

from __future__ import annotations

from ._i18n import LABELS, LANGS, pick_lang
from ._routes import ui_router

__all__ = ["LABELS", "LANGS", "pick_lang", "ui_router"]
