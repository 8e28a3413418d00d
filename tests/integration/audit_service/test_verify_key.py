"""The officer UI's "Verify the whole log now" checks signatures against the service's
own verifier key, never against keys read from the store it checks (issue #11 item 5).

The attack (``rewritten_with_new_key`` in the corpus): whoever can write the store
rewrites history, records their own key in it and re-signs every checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from audit.log import AuditLog, open_log
from tests.assets.audit import make_corpus
from tests.harness.audit_service import AuditEnv

from .conftest import make_client, officer_csrf, ui_verify


def _corpus_log(attack: str, tmp_path: Path) -> AuditLog:
    """The corpus dump ``attack`` in a SQLite store, opened with the corpus log's real
    signing key: the service whose store was attacked."""
    db = tmp_path / f"{attack}.db"
    make_corpus.load_rows(make_corpus.attacked_rows(attack), sqlite_path=db)
    key = tmp_path / "corpus-signing.key"
    shutil.copyfile(make_corpus.KEY_FILE, key)
    key.chmod(0o600)  # git does not keep modes
    return open_log(f"sqlite://{db}", signer_key_path=key)


def _verify_in_ui(env: AuditEnv, log: AuditLog) -> dict[str, object]:
    with make_client(env, log, checkpoint_interval_seconds=0) as client:
        return ui_verify(client, officer_csrf(client, env.officer_token))


@pytest.mark.parametrize(
    ("attack", "ok", "outcome"),
    [("rewritten_with_new_key", False, "failure"), ("intact", True, "success")],
)
def test_officer_ui_verify_catches_history_rewritten_with_a_new_key(
    env: AuditEnv, tmp_path: Path, attack: str, ok: bool, outcome: str
) -> None:
    with _corpus_log(attack, tmp_path) as log:
        status = _verify_in_ui(env, log)
        rows = log.store.entries(0, log.sequenced())
    assert status["ok"] is ok, status
    message = str(status["message"])
    assert "recorded in the store itself" not in message  # the service's key was used
    if not ok:
        assert "signature or format invalid" in message
    [recorded] = [e for e in (orjson.loads(r[-1]) for r in rows) if e["action"] == "audit.verified"]
    assert recorded["outcome"] == outcome
