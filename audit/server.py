"""The audit service as ``enclave audit serve`` runs it: the service's API with the
officer UI mounted on it.

The layers (import-linter enforces them): ``audit.ui`` builds on ``audit.service``,
which builds on the log (``audit.log`` and the modules below it); neither the service
nor the log imports the UI. This module, the CLI and tests join them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .service import create_app as create_service_app
from .ui import ui_router

__all__ = ["create_app"]


def create_app(**kwargs: Any) -> FastAPI:
    """``audit.service.create_app(**kwargs)`` with the officer UI under ``/ui``."""
    app = create_service_app(**kwargs)
    ui_router(app)
    return app
