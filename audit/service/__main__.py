"""``python -m audit.service ...`` is ``enclave audit serve ...`` (for process managers)."""

from __future__ import annotations

from .._service_cli import serve

if __name__ == "__main__":
    serve(prog_name="python -m audit.service")
