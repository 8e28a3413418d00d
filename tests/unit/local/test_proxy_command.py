"""A site that runs configurable-http-proxy beside each hub: its command checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.local._backend import LocalBackend, LocalSettings
from controller.local.errors import SetupError


def test_a_missing_proxy_script_stops_the_backend_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "node_modules" / "configurable-http-proxy"
    settings = LocalSettings(
        enclaves_dir=tmp_path,
        state_dir=tmp_path / "state",
        portal_url="http://127.0.0.1:1",
        portal_admin_token_file=tmp_path / "admin-token",
        audit_url="http://127.0.0.1:2",
        audit_tokens_file=tmp_path / "tokens",
        audit_store=f"sqlite:///{tmp_path / 'audit.db'}",
        proxy_command=("/usr/bin/node", str(missing)),
    )
    with pytest.raises(SetupError, match=f"^{missing} is missing: run 'make setup'"):
        LocalBackend(settings=settings, say=print).open()
    assert not (tmp_path / "state").exists()  # refused before anything is written
