"""``--proxy configurable-http-proxy``: node in lite mode, every part checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.local._backend import LocalBackend, LocalSettings
from controller.local._hostfiles import PROXY_NODE_FLAGS, proxy_command
from controller.local.errors import SetupError

REPO = Path(__file__).resolve().parents[3]


def test_the_proxy_runs_under_node_in_lite_mode_from_the_repositorys_node_modules() -> None:
    node, *flags, script = proxy_command(REPO)
    assert Path(node).is_absolute()
    assert Path(node).name.startswith("node"), node
    assert tuple(flags) == PROXY_NODE_FLAGS == ("--lite-mode",)
    assert script == str(REPO / "node_modules/configurable-http-proxy/bin/configurable-http-proxy")
    assert Path(script).is_file(), "run 'make setup' (npm install)"


def test_a_missing_proxy_script_stops_the_backend_naming_it(tmp_path: Path) -> None:
    node, *flags, _ = proxy_command(REPO)
    missing = tmp_path / "node_modules" / "configurable-http-proxy"
    settings = LocalSettings(
        enclaves_dir=tmp_path,
        state_dir=tmp_path / "state",
        portal_url="http://127.0.0.1:1",
        portal_admin_token_file=tmp_path / "admin-token",
        audit_url="http://127.0.0.1:2",
        audit_tokens_file=tmp_path / "tokens",
        audit_store=f"sqlite:///{tmp_path / 'audit.db'}",
        proxy_command=(node, *flags, str(missing)),
    )
    with pytest.raises(SetupError, match=f"^{missing} is missing: run 'make setup'"):
        LocalBackend(settings=settings, say=print).open()
    assert not (tmp_path / "state").exists()  # refused before anything is written
