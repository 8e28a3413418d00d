"""docs/audit-officer.md stays true: its commands run, its options exist."""

from __future__ import annotations

import re
import shlex
import sqlite3
from pathlib import Path

import orjson
from click.testing import CliRunner

from audit.cli import audit
from audit.log import open_log

DOC = Path(__file__).parents[3] / "docs" / "audit-officer.md"


def _sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)


def _commands(block: str) -> list[list[str]]:
    joined = block.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("enclave audit "):
            out.append(shlex.split(line)[2:])
    return out


def test_the_token_commands_run_as_documented(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    store = f"sqlite:///{tmp_path / 'audit.db'}"
    runner = CliRunner()
    token_block = next(b for b in _sh_blocks() if "token rotate" in b)
    token_id = ""
    ran = []
    for argv in _commands(token_block):
        argv = [{"FILE": str(tokens), "URL": store, "TOKEN_ID": token_id}.get(a, a) for a in argv]
        r = runner.invoke(audit, argv, catch_exceptions=False)
        assert r.exit_code == 0, (argv, r.output)
        ran.append(argv[1])
        if argv[1] == "issue":
            assert r.stdout.startswith("eat_")
            token_id = r.stdout.strip().split("_")[1]
        if argv[1] == "list":
            assert f"{token_id}\thub\tactive\thub-gut-microbiome" in r.stdout
        if argv[1] == "rotate":
            assert r.stdout.startswith("eat_")
    assert ran == ["issue", "list", "rotate", "revoke"]
    with open_log(store) as log:
        rows = log.store.entries(0, log.sequenced())
    actions = [r[6] for r in rows]
    assert actions == ["audit.token.issued", "audit.token.issued", "audit.token.revoked"]
    assert orjson.loads(rows[-1][-1])["details"]["reason"] == "host decommissioned"


def test_bad_token_input_exits_2_with_one_sentence(tmp_path: Path) -> None:
    runner = CliRunner()
    tokens = str(tmp_path / "t.json")
    store = f"sqlite:///{tmp_path / 'audit.db'}"
    r = runner.invoke(
        audit, ["token", "issue", "--tokens", tokens, "--store", store, "--source", "browser"]
    )
    assert r.exit_code == 2
    assert "unknown source 'browser'" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(audit, ["token", "revoke", "--tokens", tokens, "--store", store, "nope"])
    assert r.exit_code == 2
    assert "no token with id 'nope'" in r.output


def test_a_token_change_without_an_audit_store_changes_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    tokens = tmp_path / "t.json"
    r = runner.invoke(
        audit, ["token", "issue", "--tokens", str(tokens), "--source", "controller"], env={}
    )
    assert r.exit_code == 2
    assert "--store" in r.output
    missing = f"sqlite:///{tmp_path / 'no-such-dir' / 'audit.db'}"
    r = runner.invoke(
        audit,
        ["token", "issue", "--tokens", str(tokens), "--store", missing, "--source", "controller"],
    )
    assert r.exit_code == 2
    assert "nothing was changed" in r.output
    assert "Traceback" not in r.output
    assert not tokens.exists()


def test_a_change_the_store_refuses_to_record_is_not_made(tmp_path: Path) -> None:
    runner = CliRunner()
    tokens = tmp_path / "t.json"
    store = f"sqlite:///{tmp_path / 'audit.db'}"
    r = runner.invoke(
        audit,
        ["token", "issue", "--tokens", str(tokens), "--store", store, "--source", "controller"],
    )
    assert r.exit_code == 0, r.output
    token_id = r.stdout.strip().split("_")[1]
    before = tokens.read_bytes()
    # the store accepts no more entries (a full disk, a broken replica, ...)
    conn = sqlite3.connect(tmp_path / "audit.db")
    conn.execute(
        "CREATE TRIGGER full BEFORE INSERT ON audit_entries "
        "BEGIN SELECT RAISE(ABORT, 'the disk is full'); END"
    )
    conn.commit()
    conn.close()
    for argv in (
        ["issue", "--source", "portal"],
        ["rotate", token_id],
        ["revoke", token_id, "--reason", "test"],
    ):
        r = runner.invoke(
            audit, ["token", argv[0], "--tokens", str(tokens), "--store", store, *argv[1:]]
        )
        assert r.exit_code == 1, (argv, r.output)
        assert "could not be recorded, so it was not made" in r.output
        assert "eat_" not in r.output  # no token was handed out
        assert tokens.read_bytes() == before, argv


def test_every_serve_option_in_the_doc_exists() -> None:
    help_text = CliRunner().invoke(audit, ["serve", "--help"]).output
    serve_block = next(b for b in _sh_blocks() if "audit serve" in b)
    used = set(re.findall(r"(--[a-z-]+)", serve_block.split("audit serve", 1)[1]))
    table = set(re.findall(r"`(--[a-z-]+)", DOC.read_text().split("### Intake tokens")[0]))
    assert used
    assert used <= table
    for opt in used | table:
        assert opt in help_text, opt


def test_serve_refuses_a_missing_officer_token_file(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        audit,
        [
            "serve",
            "--store",
            f"sqlite:///{tmp_path / 'a.db'}",
            "--tokens",
            str(tmp_path / "t.json"),
            "--officer-token-file",
            str(tmp_path / "missing"),
        ],
    )
    assert r.exit_code == 2
    assert "does not exist" in r.output


def test_the_client_example_runs_against_the_real_service(tmp_path: Path) -> None:
    from tests.harness.audit_service import ServiceProcess, make_audit_env, sample_event

    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[0]
    env = make_audit_env(tmp_path / "audit")
    with ServiceProcess(env) as sp:
        other = sample_event()
        denied: list[bool] = []
        ns = {
            "TOKEN": env.tokens["portal"],
            "STATE": tmp_path,
            "user": "r.tanaka@company-a.example",
            "ip": "192.0.2.1",
            "deny_entry": lambda: denied.append(True),
            "other_event": other,
        }
        exec(code.replace("http://audit:8700", sp.url), ns)  # noqa: S102
    assert denied == []
    with open_log(env.store_url) as log:
        rows = log.store.entries(0, log.sequenced())
    assert [r[6] for r in rows if r[4] == "portal"] == ["session.started", other.action]


def test_serve_refuses_incomplete_or_unsafe_oidc_options(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    secret.chmod(0o644)
    base = ["serve", "--store", f"sqlite:///{tmp_path / 'a.db'}", "--tokens", str(tmp_path / "t")]
    full = [
        "--oidc-issuer",
        "https://portal.example",
        "--oidc-client-id",
        "audit-ui",
        "--oidc-client-secret-file",
        str(secret),
        "--oidc-redirect-uri",
        "https://audit.example/ui/oidc/callback",
    ]
    cases = [
        (full[:2], "--oidc-issuer needs --oidc-client-id"),
        (full[2:4], "--oidc-client-id needs --oidc-issuer"),
        (full, "readable by group or others"),
        ([*full, "--oidc-min-tier", "nbdc-ultra"], "unknown tier 'nbdc-ultra'"),
    ]
    for extra, msg in cases:
        r = CliRunner().invoke(audit, [*base, *extra])
        assert r.exit_code == 2, (extra, r.output)
        assert msg in r.output
        assert "Traceback" not in r.output
    secret.chmod(0o600)
    wrong_uri = [*full[:-1], "https://audit.example/elsewhere"]
    r = CliRunner().invoke(audit, [*base, *wrong_uri])
    assert r.exit_code == 2
    assert "must end in /ui/oidc/callback" in r.output
