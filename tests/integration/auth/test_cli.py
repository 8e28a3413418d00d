"""The portal CLI against a real SQLite store: invite, list, approve, disable, enclaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from auth.cli import clients, enclaves, portal, users


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    keys = tmp_path / "keys"
    r = CliRunner().invoke(portal, ["init-keys", str(keys)])
    assert r.exit_code == 0, r.output
    assert (keys.stat().st_mode & 0o777) == 0o600
    return {
        "ENCLAVE_PORTAL_STORE": f"sqlite:///{tmp_path / 'id.db'}",
        "ENCLAVE_PORTAL_KEY_FILE": str(keys),
        "ENCLAVE_PORTAL_AUDIT_LOG": f"unsafe-jsonl:{tmp_path / 'audit.jsonl'}",
    }


def run(group: object, args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    r = CliRunner().invoke(group, args, env=env)  # type: ignore[arg-type]
    return r.exit_code, r.stdout, r.stderr


def test_users_and_enclaves_round_trip(env: dict[str, str], tmp_path: Path) -> None:
    code, out, _ = run(users, ["invite", "r.tanaka@company-a.example", "--role", "researcher"], env)
    assert code == 0
    assert len(json.loads(out)["invitation_code"]) >= 32
    code, out, _ = run(users, ["list", "--json"], env)
    assert json.loads(out)[0]["status"] == "invited"
    code, out, _ = run(
        enclaves,
        [
            "register",
            "gut-2026",
            "--tier",
            "nbdc-high",
            "--member",
            "r.tanaka@company-a.example",
            "--network",
            "192.0.2.0/24",
            "--client-id",
            "hub-gut",
            "--redirect-uri",
            "https://gut.example/hub/oauth_callback",
        ],
        env,
    )
    assert code == 0, out
    reg = json.loads(out)
    assert reg["client_id"] == "hub-gut"
    assert len(reg["client_secret"]) >= 40
    code, out, _ = run(enclaves, ["list", "--json"], env)
    assert json.loads(out)[0]["members"] == [
        {"user": "r.tanaka@company-a.example", "role": "researcher"}
    ]
    # The secret is stored hashed only.
    assert reg["client_secret"].encode() not in (tmp_path / "id.db").read_bytes()
    code, out, _ = run(users, ["disable", "r.tanaka@company-a.example"], env)
    assert code == 0
    code, out, _ = run(enclaves, ["remove", "gut-2026"], env)
    assert code == 0
    actions = [json.loads(x)["action"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert actions == [
        "admin.user.invited",
        "admin.enclave.registered",
        "admin.user.disabled",
        "admin.enclave.removed",
    ]


def test_cli_usernames_in_any_case_name_one_account(env: dict[str, str], tmp_path: Path) -> None:
    """Issue #11 item 3: the CLI normalises names as the web app and admin API do."""
    code, out, _ = run(users, ["invite", "R.Tanaka@Company-A.example"], env)
    assert code == 0
    assert json.loads(out)["username"] == "r.tanaka@company-a.example"
    code, out, _ = run(users, ["invite", "r.tanaka@COMPANY-A.example", "--role", "pi"], env)
    assert code == 0  # the same account, re-invited: not a second user
    code, out, _ = run(users, ["list", "--json"], env)
    assert [(u["username"], u["roles"]) for u in json.loads(out)] == [
        ("r.tanaka@company-a.example", ["pi"])
    ]
    args = ["register", "gut-2026", "--tier", "nbdc-standard", "--network", "192.0.2.0/24"]
    code, out, err = run(enclaves, [*args, "--member", "R.TANAKA@company-a.example=pi"], env)
    assert code == 0, err
    code, out, _ = run(enclaves, ["list", "--json"], env)
    assert json.loads(out)[0]["members"] == [{"user": "r.tanaka@company-a.example", "role": "pi"}]
    code, out, err = run(users, ["disable", "R.TANAKA@COMPANY-A.EXAMPLE"], env)
    assert (code, out.strip()) == (0, "disabled r.tanaka@company-a.example; 0 session(s) ended")
    code, _, err = run(users, ["invite", "r.tanaka@company-a.example"], env)
    assert code == 2
    assert "exists already (disabled)" in err
    assert "Traceback" not in err


def test_clients_register_a_non_enclave_client(env: dict[str, str], tmp_path: Path) -> None:
    uri = "https://audit.example/ui/oidc/callback"
    code, out, err = run(clients, ["register", "audit-ui", "--redirect-uri", uri], env)
    assert code == 0, err
    first = json.loads(out)
    assert first["client_id"] == "audit-ui"
    assert len(first["client_secret"]) >= 40
    # registering again issues a new secret; only hashes are stored
    code, out, _ = run(clients, ["register", "audit-ui", "--redirect-uri", uri], env)
    second = json.loads(out)
    assert second["client_secret"] != first["client_secret"]
    db = (tmp_path / "id.db").read_bytes()
    assert first["client_secret"].encode() not in db
    assert second["client_secret"].encode() not in db
    actions = [json.loads(x)["action"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert actions == ["admin.client.registered", "admin.client.registered"]
    # an enclave hub's client cannot be taken over through `clients register`
    code, _, err = run(
        enclaves,
        [
            "register",
            "gut-2026",
            "--tier",
            "nbdc-standard",
            "--network",  # every tier requires an allow-list (NBDC-U7 2.1 item 4)
            "192.0.2.0/24",
            "--client-id",
            "hub-gut",
            "--redirect-uri",
            "https://gut.example/hub/oauth_callback",
        ],
        env,
    )
    assert code == 0, err
    code, _, err = run(clients, ["register", "hub-gut", "--redirect-uri", uri], env)
    assert code == 2
    assert "belongs to enclave 'gut-2026'" in err


@pytest.mark.parametrize(
    ("group", "args", "msg"),
    [
        (enclaves, ["register", "Bad_Name", "--tier", "nbdc-standard"], "DNS-1123"),
        (enclaves, ["register", "x", "--tier", "nbdc-ultra"], "Unknown tier 'nbdc-ultra'"),
        (
            enclaves,
            ["register", "x", "--tier", "nbdc-high"],
            "requires a source network allow-list",
        ),
        (
            enclaves,
            ["register", "x", "--tier", "nbdc-standard", "--network", "10.0.0.300/8"],
            "CIDR",
        ),
        (enclaves, ["remove", "nope"], "No enclave named 'nope'"),
        (users, ["approve", "ghost", "some-id"], "No user named 'ghost'"),
        (users, ["invite", "bad name"], "The username must be"),
        (clients, ["register", "bad id!", "--redirect-uri", "https://a.example/cb"], "client_id"),
        (clients, ["register", "audit-ui", "--redirect-uri", "http://a.example/cb"], "https"),
        (clients, ["register", "audit-ui"], "--redirect-uri"),
    ],
)
def test_bad_input_is_one_sentence_exit_2(
    env: dict[str, str], group: object, args: list[str], msg: str
) -> None:
    code, out, err = run(group, args, env)
    assert code == 2
    assert msg in err
    assert "Traceback" not in err + out


def test_key_ring_rotation_is_atomic_and_keeps_old_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auth import KeyRing

    keys = tmp_path / "keys"
    assert CliRunner().invoke(portal, ["init-keys", str(keys)]).exit_code == 0
    sealed = KeyRing.from_file(path=keys).seal(plaintext=b"totp-secret", context="c")
    for kid in ("k2", "k3"):
        r = CliRunner().invoke(portal, ["init-keys", str(keys), "--rotate", "--kid", kid])
        assert r.exit_code == 0, r.output
        assert (keys.stat().st_mode & 0o777) == 0o600
    ring = KeyRing.from_file(path=keys)
    assert [k for k, _ in ring.keys] == ["k3", "k2", "k1"]
    assert ring.open(sealed=sealed, context="c") == b"totp-secret"
    before = keys.read_bytes()

    # A failure just before the rename (disk full, crash) leaves the old ring intact.
    def fail(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("auth._cli.os.replace", fail)
    r = CliRunner().invoke(portal, ["init-keys", str(keys), "--rotate", "--kid", "k4"])
    assert r.exit_code == 2
    assert "No space left on device" in r.stderr
    assert keys.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys"]
    assert KeyRing.from_file(path=keys).open(sealed=sealed, context="c") == b"totp-secret"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_serve_refuses_a_group_or_world_readable_admin_token_file(
    env: dict[str, str], tmp_path: Path, mode: int
) -> None:
    token = tmp_path / "admin-token"
    token.write_text("t" * 40)
    token.chmod(mode)
    code, out, err = run(
        portal,
        ["serve", "--issuer", "https://localhost", "--admin-token-file", str(token)],
        env,
    )
    assert code == 2
    assert "readable by group or others; chmod 600 it" in err
    assert "Traceback" not in err + out


def test_migrate_applies_pending_steps_records_them_and_refuses_a_newer_store(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from auth import _store

    code, out, _ = run(portal, ["migrate"], env)  # a new store: every step
    assert code == 0, out
    every = ", ".join(f"{v:04d}_{n}" for v, n, _ in _store.MIGRATIONS)
    latest = _store.SCHEMA_VERSION
    assert f"schema version {latest}: applied {every}" in out
    code, out, _ = run(portal, ["migrate"], env)
    assert (code, out.strip()) == (0, f"identity store already at schema version {latest}")
    step = (latest + 1, "test_step", ("CREATE TABLE test_step (x INTEGER)",))
    monkeypatch.setattr(_store, "MIGRATIONS", (*_store.MIGRATIONS, step))
    code, _, err = run(users, ["list"], env)  # an older store is not changed silently
    assert code == 2
    assert "enclave portal migrate" in err
    assert "Traceback" not in err
    code, out, _ = run(portal, ["migrate"], env)
    assert code == 0, out
    assert f"schema version {latest + 1}: applied {latest + 1:04d}_test_step" in out
    events = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    migrated = [e for e in events if e["action"] == "admin.store.migrated"]
    assert [e["details"] for e in migrated] == [
        {"version": latest, "applied": every.replace(", ", ",")},
        {"version": latest + 1, "applied": f"{latest + 1:04d}_test_step"},
    ]
    monkeypatch.undo()
    code, _, err = run(users, ["list"], env)
    assert code == 2
    assert f"newer than this Enclave knows ({latest})" in err
    assert sqlite3.connect(tmp_path / "id.db").execute("SELECT count(*) FROM test_step").fetchone()
