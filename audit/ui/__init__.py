"""The officer UI: server-rendered pages over the audit service (no build step).

Mounted by ``audit.service.create_app``; every page needs an officer session and every
page that shows records appends an ``audit.read`` event first. It never writes any
other entry and never serves a script inline (strict CSP).
"""

from __future__ import annotations

from ._i18n import LABELS, LANGS, pick_lang
from ._routes import ui_router

__all__ = ["LABELS", "LANGS", "pick_lang", "ui_router"]
