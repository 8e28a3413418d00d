"""The identity store's contract, run against SQLite and a real PostgreSQL.

Two store instances on one database stand for two portal processes: the TOTP
single-use claim and the authorization-code redemption have exactly one winner.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from auth._errors import ConflictError, InvalidInputError
from auth._store import MIGRATIONS, IdentityStore, StoreError, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'id.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    # A fresh schema per test: a new database keeps tests independent.
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    yield base.replace("/postgres?", f"/{name}?")


def _user(s: IdentityStore, name: str = "dave") -> str:
    uid = str(uuid.uuid4())
    s.create_user(
        user_id=uid,
        username=name,
        display_name=name,
        roles=frozenset({"researcher"}),
        status="active",
        locale="ja",
        now=1.0,
    )
    return uid


def test_users_credentials_and_conflicts(url: str) -> None:
    s = open_store(url=url)
    uid = _user(s)
    assert s.find_user(username="dave").locale == "ja"  # type: ignore[union-attr]
    with pytest.raises(ConflictError):
        _user(s)
    c = s.add_credential(
        cred_id="c1",
        user_id=uid,
        kind="webauthn",
        label="k",
        secret=b"\x00\xffpk",
        webauthn_id=b"\x01\x02",
        now=2.0,
        backup_eligible=True,
    )
    assert c.secret == b"\x00\xffpk"
    assert s.find_webauthn(webauthn_id=b"\x01\x02").id == "c1"  # type: ignore[union-attr]
    after = s.record_failure(cred_id="c1", now=10.0, max_failures=3, backoff_after=2, backoff_s=30)
    assert after.failures == 1
    assert after.locked_until == 0
    after = s.record_failure(cred_id="c1", now=10.0, max_failures=3, backoff_after=2, backoff_s=30)
    assert after.locked_until == 40.0
    after = s.record_failure(cred_id="c1", now=50.0, max_failures=3, backoff_after=2, backoff_s=30)
    assert after.disabled
    s.close()


def test_totp_step_single_use_across_two_instances(url: str) -> None:
    a, b = open_store(url=url), open_store(url=url)
    uid = _user(a)
    a.add_credential(cred_id="t1", user_id=uid, kind="totp", label="app", secret=b"sealed", now=1.0)
    wins: list[bool] = []
    lock = threading.Lock()

    def claim(s: IdentityStore) -> None:
        ok = s.claim_totp_step(cred_id="t1", step=1000, now=5.0)
        with lock:
            wins.append(ok)

    ts = [threading.Thread(target=claim, args=(s,)) for s in (a, b, a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(wins) == [False, False, False, True]
    assert not b.claim_totp_step(cred_id="t1", step=999)  # older steps are never accepted
    assert b.claim_totp_step(cred_id="t1", step=1001)
    a.close()
    b.close()


def test_code_redeemed_once_across_two_instances(url: str) -> None:
    a, b = open_store(url=url), open_store(url=url)
    a.put_code(code_hash="h", payload={"x": 1}, expires_at=100.0)
    assert b.peek_code(code_hash="h", now=50.0) == {"x": 1}
    r1 = a.redeem_code(
        code_hash="h", now=50.0, token_hash="t1", token_payload={"u": 1}, token_expires_at=60.0
    )
    r2 = b.redeem_code(
        code_hash="h", now=50.0, token_hash="t2", token_payload={"u": 1}, token_expires_at=60.0
    )
    assert (r1, r2) == (True, False)
    assert b.get_access_token(token_hash="t1", now=55.0) == {"u": 1}
    assert b.get_access_token(token_hash="t1", now=61.0) is None
    a.put_code(code_hash="old", payload={}, expires_at=10.0)
    assert not a.redeem_code(
        code_hash="old", now=50.0, token_hash="t3", token_payload={}, token_expires_at=60.0
    )
    a.close()
    b.close()


def test_enclaves_sessions_invitations(url: str) -> None:
    s = open_store(url=url)
    uid = _user(s)
    added, removed = s.put_enclave(
        name="e1",
        tier="nbdc-high",
        display_name="E",
        networks=["192.0.2.0/24"],
        members=[("dave", "pi")],
        hub_url="",
        now=1.0,
    )
    assert (added, removed) == ({"dave"}, set())
    added, removed = s.put_enclave(
        name="e1", tier="nbdc-high", display_name="E", networks=[], members=[], hub_url="", now=2.0
    )
    assert removed == {"dave"}
    assert s.list_enclaves(username="dave") == []
    # A code is live only while its account is invited; a new one cancels the older.
    roles = frozenset({"researcher"})
    with pytest.raises(ConflictError):  # dave is active: re-bind, not re-invite
        s.issue_invitation(
            user_id=uid, token_hash="ih", created_by="o", expires_at=1e2, roles=roles
        )
    assert (
        s.issue_invitation(
            user_id=uid, token_hash="ih", created_by="o", expires_at=1e2, roles=roles, rebind=True
        )
        == 0
    )
    assert s.get_user(user_id=uid).status == "invited"
    assert s.list_credentials(user_id=uid) == []
    assert (
        s.issue_invitation(
            user_id=uid, token_hash="ih2", created_by="o", expires_at=1e2, roles=frozenset({"pi"})
        )
        == 1
    )
    assert s.get_user(user_id=uid).roles == {"pi"}
    assert s.peek_invitation(token_hash="ih", now=50.0) is None
    assert s.invitation_refusal(token_hash="ih", now=50.0) == "unknown or cancelled"
    assert s.peek_invitation(token_hash="ih2", now=200.0) is None
    assert s.invitation_refusal(token_hash="ih2", now=200.0) == "expired"
    assert s.peek_invitation(token_hash="ih2", now=50.0) == uid
    accept = {"token_hash": "ih2", "user_id": uid, "cred_id": "pw", "password_hash": b"h"}
    assert s.accept_invitation(now=50.0, **accept)
    assert not s.accept_invitation(now=50.0, **accept)
    assert s.invitation_refusal(token_hash="ih2", now=50.0) == "used"
    assert s.get_user(user_id=uid).status == "active"
    s.create_session(id_hash="sh", csrf="c", client_ip="192.0.2.1", now=1.0)
    s.save_session(
        id_hash="sh", user_id=uid, state={"stage": "authenticated"}, last_seen=2.0, auth_time=2.0
    )
    assert [r.id_hash for r in s.list_sessions(user_id=uid)] == ["sh"]
    assert s.end_session(id_hash="sh", now=3.0)
    assert not s.end_session(id_hash="sh", now=3.0)
    s.close()


def test_bad_urls_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="sqlite:/// or postgresql://"):
        open_store(url="mysql://x")
    with pytest.raises(InvalidInputError, match=r"only SQLite URL option .* synchronous=full"):
        open_store(url="sqlite:////tmp/x.db?journal=off")


def test_power_cut_cannot_revive_a_used_totp_step_through_synchronous_normal(
    tmp_path: Path,
) -> None:
    """``synchronous=normal`` could lose the newest commits on power loss, which for
    this store means a used TOTP step, invitation or authorization code becoming
    valid again; the option is gone, and naming it says why."""
    with pytest.raises(InvalidInputError, match="a power cut could make a used"):
        open_store(url=f"sqlite:///{tmp_path / 'id.db'}?synchronous=normal")
    open_store(url=f"sqlite:///{tmp_path / 'id.db'}?synchronous=full").close()


def test_schema_steps_are_recorded_and_an_existing_store_migrates_only_when_asked(
    url: str,
) -> None:
    from auth._store import SCHEMA_VERSION

    s = open_store(url=url)
    assert s.migrations_applied == [f"{v:04d}_{n}" for v, n, _ in MIGRATIONS]
    assert s.schema_version() == SCHEMA_VERSION
    uid = _user(s)
    s.close()
    again = open_store(url=url)
    assert again.migrations_applied == []
    step = (SCHEMA_VERSION + 1, "test_step", ("CREATE TABLE test_step (x INTEGER)",))
    with pytest.raises(StoreError, match="enclave portal migrate"):
        again._schema(migrate=False, steps=(*MIGRATIONS, step))
    assert again.schema_version() == SCHEMA_VERSION  # nothing changed
    assert again._schema(migrate=True, steps=(*MIGRATIONS, step)) == [
        f"{SCHEMA_VERSION + 1:04d}_test_step"
    ]
    again.close()
    with pytest.raises(StoreError, match="newer than this Enclave knows"):
        open_store(url=url)  # the store is now ahead of this code
    with pytest.raises(StoreError, match="newer than this Enclave knows"):
        open_store(url=url, migrate=True)  # which migrate cannot change either
    assert uid


def test_a_store_made_before_steps_were_recorded_is_adopted(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'id.db'}"
    s = open_store(url=url)
    uid = _user(s)
    s.close()
    raw = sqlite3.connect(tmp_path / "id.db")
    raw.execute("DROP TABLE identity_schema_migrations")  # as the code before them made it
    raw.execute("ALTER TABLE oidc_clients DROP COLUMN tier")  # added by step 2
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="enclave portal migrate"):
        open_store(url=url)  # step 1 adopts it; the later steps need a migration
    adopted = open_store(url=url, migrate=True)
    assert adopted.migrations_applied == [f"{v:04d}_{n}" for v, n, _ in MIGRATIONS]
    assert adopted.get_user(user_id=uid).username == "dave"


def test_store_migration_folds_username_case_and_disables_case_twins(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #11 item 3, existing stores: schema step 2 lower-cases names; accounts
    whose names differ only by case cannot be told apart any more, so every account of
    such a group is disabled (the oldest keeps the name, the others get a suffix) until
    an officer re-binds the right one."""
    from auth import _store

    with monkeypatch.context() as m:
        m.setattr(_store, "MIGRATIONS", _store.MIGRATIONS[:1])  # as the code before step 2
        old = open_store(url=url)
    with old._tx() as tx:  # rows as the old code kept them (create_user refuses them now)
        for uid, name, at in [
            ("u1-00000x", "R.Tanaka", 1),
            ("u2-00000x", "r.tanaka", 2),
            ("u3-00000x", "K.Sato", 3),
        ]:
            tx.q(
                "INSERT INTO users VALUES (?, ?, ?, 'researcher', 'active', 'en', ?)",
                (uid, name, name, at),
            )
        tx.q("INSERT INTO enclaves VALUES ('gut', 'nbdc-standard', 'Gut', '[]', 'h', 0)")
        for name, role in [("R.Tanaka", "pi"), ("r.tanaka", "researcher"), ("K.Sato", "pi")]:
            tx.q("INSERT INTO enclave_members VALUES ('gut', ?, ?)", (name, role))
        tx.q("INSERT INTO invitations VALUES ('h', 'u2-00000x', 'cli:x', 1e12, NULL)")
        tx.q("INSERT INTO sessions VALUES ('s', 'u2-00000x', '{}', 'c', NULL, 0, 0, 0, NULL)")
    old.close()
    with pytest.raises(StoreError, match="enclave portal migrate"):
        open_store(url=url)
    s = open_store(url=url, migrate=True)
    assert s.migrations_applied == [f"{v:04d}_{n}" for v, n, _ in MIGRATIONS[1:]]
    assert {u.id: (u.username, u.status) for u in s.list_users()} == {
        "u1-00000x": ("r.tanaka", "disabled"),
        "u2-00000x": ("r.tanaka+case-u2-00000", "disabled"),
        "u3-00000x": ("k.sato", "active"),
    }
    assert s.migration_notes == [
        "usernames that differed only by case, now disabled: r.tanaka, r.tanaka+case-u2-00000"
    ]
    assert s.peek_invitation(token_hash="h", now=0.0) is None
    assert s.list_sessions(user_id="u2-00000x") == []
    assert s.list_enclaves()[0].members == (("k.sato", "pi"), ("r.tanaka", "researcher"))
    assert s.find_user(username="K.SATO") is not None
    s.close()
