"""Make the audit attack corpus: one store dump per attack, named after the attack.

Run from the repository root: ``.venv/bin/python -m tests.assets.audit.make_corpus``.
Output is deterministic (fixed events, fixed clock, a fixed test-only signing key,
Ed25519 is deterministic), so re-running it reproduces the checked-in files byte for
byte; ``tests/integration/audit/test_attack_corpus.py`` checks that too.

``intact.jsonl`` is a whole store dump, JSON lines, one stored row each:
``{"table": ..., <columns>}`` with bytes in base64. Each attack file is the attack as a
diff against it: ``{"op": "delete", "table": ..., "key": [...]}`` and
``{"op": "put", "table": ..., "row": {...}}`` lines (:func:`attacked_rows` applies one).
:func:`load_rows` writes rows into a fresh SQLite or PostgreSQL store the way an
attacker with raw database access would (plain INSERTs, no audit code involved).

The intact log: 520 events (two full tiles and a partial one), integrated at sizes
100, 300, 450, 520, with checkpoints signed at 300 and 520. Attacks (``<name>.jsonl``;
the earlier checkpoint the victim
kept elsewhere is ``<name>.checkpoint`` where the attack needs one):

- ``edited_field_<f>``: one field ``f`` of entry 123's leaf changed in place.
- ``edited_column_<c>``: one lookup column ``c`` of entry 123 changed.
- ``edited_index_actor``: the actor in entry 123's query-index row changed.
- ``edited_entry_rehashed``: entry 123's leaf changed and its leaf hash recomputed.
- ``edited_leaf_hash``: the stored leaf hash of entry 200 changed.
- ``edited_tile_hash``: one hash in the stored tile (level 0, index 1) changed.
- ``edited_tree_head``: the stored root of the tree head at size 450 changed.
- ``edited_checkpoint_root``: the root column of the checkpoint at 520 changed.
- ``deleted_middle_entry``: entry 300 removed, a gap left.
- ``deleted_middle_entry_renumbered``: entry 300 removed, later entries renumbered.
- ``swapped_entries``: the contents of entries 100 and 101 swapped.
- ``inserted_entry``: a forged entry inserted at 400, later entries renumbered.
- ``inserted_entry_rehashed``: as above, with every tile and tree head recomputed.
- ``forged_checkpoint_signature``: the signature of the checkpoint at 520 replaced.
- ``truncated_tail``: entries from 450 on removed with every row that mentions them;
  only detectable against ``truncated_tail.checkpoint`` (the checkpoint at 520).
- ``forked_history``: entries from 400 on replaced and re-signed with the log's own
  key (an insider); only detectable against ``forked_history.checkpoint``.
- ``rewritten_with_new_key``: entry 123's actor changed, every derived row recomputed,
  the log's key replaced in the store by the attacker's own (same name, another key)
  and every checkpoint re-signed with it: internally perfect, so verify without
  ``--key`` passes, saying it trusted the store's keys; only detectable with the log's
  real verifier key (``--key``, and the audit service's own key).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from audit import Event, open_log

HERE = Path(__file__).resolve().parent
KEY_FILE = HERE / "corpus-signing.key"  # TEST ONLY: a public, deterministic key
ORIGIN = "corpus.enclave.test/audit"

TABLES = (
    "audit_entries",
    "audit_index",
    "audit_tiles",
    "audit_tree_heads",
    "audit_checkpoints",
    "audit_keys",
)
BYTES_COLUMNS = {
    "audit_entries": ("leaf_hash", "leaf"),
    "audit_index": (),
    "audit_tiles": ("root", "hashes"),
    "audit_tree_heads": ("root",),
    "audit_checkpoints": ("root",),
    "audit_keys": (),
}
COLUMNS = {
    "audit_entries": (
        "idx", "leaf_hash", "event_id", "time_ns", "source", "actor", "action", "enclave",
        "outcome", "leaf",
    ),
    "audit_index": ("idx", "time_ns", "source", "actor", "action", "enclave", "outcome"),
    "audit_tiles": ("level", "idx", "root", "hashes"),
    "audit_tree_heads": ("size", "root", "created"),
    "audit_checkpoints": ("seq", "size", "root", "note", "created"),
    "audit_keys": ("vkey", "added"),
}  # fmt: skip

# The expectations the corpus test checks: attack -> (needs --against, first bad index or None).
EXPECT: dict[str, tuple[bool, int | None]] = {}
# Attacks only the log's real verifier key (``--key``) shows: the store's keys are forged.
NEEDS_KEY = frozenset({"rewritten_with_new_key"})
ATTACKER_SEED = bytes(range(32, 64))  # the attacker's own key: same name, another key


def _ensure_key() -> None:
    if not KEY_FILE.exists():
        # A fixed seed so the corpus is reproducible; this key protects nothing.
        from audit._note import Signer, write_key_file

        write_key_file(KEY_FILE, Signer(ORIGIN, bytes(range(32))))
    KEY_FILE.chmod(0o600)


def _clock() -> Callable[[], str]:
    n = [0]

    def tick() -> str:
        n[0] += 1
        return f"2026-11-26T09:{n[0] // 60 % 60:02d}:{n[0] % 60:02d}.000000Z"

    return tick


def make_events(count: int, *, fork: str = "") -> list[Event]:
    actions = [
        ("auth.factor.verified", {"factor": "webauthn", "category": "possession"}),
        ("session.started", {"tier": "nbdc-high", "factors": ["password", "webauthn"]}),
        ("workspace.file.get", {"path": "/data/cohort/gt.vcf", "bytes": 1048576}),
        ("export.approved", {"request_id": "req-7", "reviewer": "officer1"}),
        ("auth.factor.failed", {"factor": "totp", "reason": "code mismatch"}),
    ]
    out = []
    for i in range(count):
        action, details = actions[i % len(actions)]
        out.append(
            Event(
                id=f"corpus{fork}-{i:05d}",
                time=f"2026-11-25T{8 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                source="portal" if i % 2 else "workspace",
                actor=f"researcher{i % 7}@example.jp" if not fork else f"intruder{i % 3}",
                action=action,
                enclave=f"proj-{i % 3}",
                outcome="failure" if action == "auth.factor.failed" else "success",
                client_ip=f"10.1.{i % 5}.{i % 250 + 1}",
                details=details,
            )
        )
    return out


def build(
    path: Path,
    events: Sequence[Event],
    *,
    integrate_at: Sequence[int],
    checkpoint_at: Sequence[int],
    key_file: Path = KEY_FILE,
) -> None:
    """Append ``events`` to a new SQLite log at ``path``, integrating and signing as told
    (with ``key_file``: the corpus key unless an attacker brings their own)."""
    _ensure_key()
    with open_log(f"sqlite://{path}", signer_key_path=key_file, clock=_clock()) as log:
        pos = 0
        for stop in integrate_at:
            log.append(list(events[pos:stop]))
            pos = stop
            log.integrate()
            if stop in checkpoint_at:
                log.checkpoint()


def dump_sqlite(path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    rows: list[dict[str, Any]] = []
    order = {"audit_entries": "idx", "audit_index": "idx", "audit_tiles": "level, idx",
             "audit_tree_heads": "size",
             "audit_checkpoints": "seq", "audit_keys": "vkey"}  # fmt: skip
    for table in TABLES:
        cols = COLUMNS[table]
        for values in conn.execute(
            f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order[table]}"  # noqa: S608
        ):
            row: dict[str, Any] = {"table": table}
            for c, v in zip(cols, values, strict=True):
                row[c] = base64.b64encode(v).decode() if c in BYTES_COLUMNS[table] else v
            rows.append(row)
    conn.close()
    return rows


KEYS = {
    "audit_entries": ("idx",),
    "audit_index": ("idx",),
    "audit_tiles": ("level", "idx"),
    "audit_tree_heads": ("size",),
    "audit_checkpoints": ("seq",),
    "audit_keys": ("vkey",),
}


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["table"], *(r[k] for k in KEYS[r["table"]]))


def diff(base: list[dict[str, Any]], attacked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The put/delete operations that turn ``base`` into ``attacked``."""
    before = {_key(r): r for r in base}
    after = {_key(r): r for r in attacked}
    ops: list[dict[str, Any]] = []
    for k in before:
        if k not in after:
            ops.append({"op": "delete", "table": k[0], "key": list(k[1:])})
    for k, r in after.items():
        if before.get(k) != r:
            ops.append(
                {"op": "put", "table": k[0], "row": {c: v for c, v in r.items() if c != "table"}}
            )
    return ops


def attacked_rows(name: str, directory: Path = HERE) -> list[dict[str, Any]]:
    """The rows of attack ``name``: ``intact.jsonl`` with ``<name>.jsonl`` applied."""
    rows = {_key(r): r for r in read_dump(directory / "intact.jsonl")}
    if name != "intact":
        for op in read_dump(directory / f"{name}.jsonl"):
            if op["op"] == "delete":
                rows.pop((op["table"], *op["key"]), None)
            else:
                r = {"table": op["table"], **op["row"]}
                rows[_key(r)] = r
    return list(rows.values())


def write_dump(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows))


def read_dump(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_rows(rows: list[dict[str, Any]], *, sqlite_path: Path | None = None,
              pg_admin_url: str | None = None,
              pg_writer: str | None = None) -> None:  # fmt: skip
    """Create the schema, then INSERT ``rows`` directly (as an attacker would)."""

    def values(r: dict[str, Any]) -> tuple[Any, ...]:
        t = r["table"]
        return tuple(base64.b64decode(r[c]) if c in BYTES_COLUMNS[t] else r[c] for c in COLUMNS[t])

    if sqlite_path is not None:
        from audit._store_sqlite import SqliteStore

        st = SqliteStore(f"sqlite://{sqlite_path}")
        st.migrate()
        st.close()
        conn = sqlite3.connect(sqlite_path)
        for r in rows:
            conn.execute(
                _insert_sql(r["table"], "?"),
                values(r),
            )
        conn.commit()
        conn.close()
    else:
        import psycopg

        from audit._store_postgres import PostgresStore

        assert pg_admin_url is not None
        st2 = PostgresStore(pg_admin_url)
        st2.migrate(writer=pg_writer)
        st2.close()
        with psycopg.connect(pg_admin_url) as conn2, conn2.cursor() as cur:
            for r in rows:
                cur.execute(
                    _insert_sql(r["table"], "%s"),
                    values(r),
                )


def _insert_sql(table: str, mark: str) -> str:
    cols = COLUMNS[table]  # table and columns come from this module's constants
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"  # noqa: S608


# -- mutations ---------------------------------------------------------------------------------
def _entries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["table"] == "audit_entries"]


def _entry(rows: list[dict[str, Any]], idx: int) -> dict[str, Any]:
    return next(r for r in _entries(rows) if r["idx"] == idx)


def _leaf(r: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(r["leaf"])))


def _set_leaf(r: dict[str, Any], d: dict[str, Any], *, rehash: bool = False) -> None:
    import orjson

    from audit._merkle import leaf_hash

    raw = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
    r["leaf"] = base64.b64encode(raw).decode()
    if rehash:
        r["leaf_hash"] = base64.b64encode(leaf_hash(raw)).decode()


def _flip(b64: str, at: int = 0) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


LEAF_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "actor": lambda d: d.update(actor="someone-else@example.jp"),
    "action": lambda d: d.update(action="auth.factor.failed"),
    "enclave": lambda d: d.update(enclave="proj-9"),
    "outcome": lambda d: d.update(outcome="denied"),
    "time": lambda d: d.update(time="2026-11-24T00:00:00Z"),
    "received": lambda d: d.update(received="2026-11-24T00:00:00.000000Z"),
    "source": lambda d: d.update(source="cli"),
    "client_ip": lambda d: d.update(client_ip="192.0.2.66"),
    "details": lambda d: d.update(details={"path": "/data/other.vcf.gz", "bytes": 1}),
    "id": lambda d: d.update(id="forged-00123"),
    "schema": lambda d: d.update(schema=2),
}
COLUMN_EDITS: dict[str, Any] = {
    "event_id": "forged-00123",
    "time_ns": 0,
    "source": "cli",
    "actor": "someone-else@example.jp",
    "action": "auth.logout",
    "enclave": "proj-9",
    "outcome": "denied",
}


def _renumber(rows: list[dict[str, Any]], entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, e in enumerate(entries):
        e["idx"] = i
    return entries + [r for r in rows if r["table"] != "audit_entries"]


def make_all(out: Path = HERE) -> dict[str, list[dict[str, Any]]]:
    """Build every dump; return them by attack name (and write them under ``out``)."""
    _ensure_key()
    attacks: dict[str, list[dict[str, Any]]] = {}
    extra_files: dict[str, str] = {}
    events = make_events(520)
    plan = {"integrate_at": (100, 300, 450, 520), "checkpoint_at": (300, 520)}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "intact.db"
        build(base, events, **plan)  # type: ignore[arg-type]
        intact = dump_sqlite(base)
        cps = [r for r in intact if r["table"] == "audit_checkpoints"]
        cp_last = next(r for r in cps if r["size"] == 520)["note"]
        attacks["intact"] = intact
        EXPECT["intact"] = (False, None)

        def copy() -> list[dict[str, Any]]:
            return json.loads(json.dumps(intact))

        for f, edit in LEAF_EDITS.items():
            rows = copy()
            d = _leaf(_entry(rows, 123))
            edit(d)
            _set_leaf(_entry(rows, 123), d)
            attacks[f"edited_field_{f}"] = rows
            EXPECT[f"edited_field_{f}"] = (False, 123)
        for c, v in COLUMN_EDITS.items():
            rows = copy()
            _entry(rows, 123)[c] = v
            attacks[f"edited_column_{c}"] = rows
            EXPECT[f"edited_column_{c}"] = (False, 123)

        rows = copy()
        row = next(r for r in rows if r["table"] == "audit_index" and r["idx"] == 123)
        row["actor"] = "someone-else@example.jp"
        attacks["edited_index_actor"] = rows
        EXPECT["edited_index_actor"] = (False, 123)

        rows = copy()
        d = _leaf(_entry(rows, 123))
        d["outcome"] = "denied"
        _set_leaf(_entry(rows, 123), d, rehash=True)
        attacks["edited_entry_rehashed"] = rows
        EXPECT["edited_entry_rehashed"] = (False, 123)

        rows = copy()
        e = _entry(rows, 200)
        e["leaf_hash"] = _flip(e["leaf_hash"])
        attacks["edited_leaf_hash"] = rows
        EXPECT["edited_leaf_hash"] = (False, 200)

        rows = copy()
        tile = next(
            r for r in rows if r["table"] == "audit_tiles" and r["level"] == 0 and r["idx"] == 1
        )
        tile["hashes"] = _flip(tile["hashes"], 32 * 44 + 5)
        attacks["edited_tile_hash"] = rows
        EXPECT["edited_tile_hash"] = (False, 256 + 44)

        rows = copy()
        head = next(r for r in rows if r["table"] == "audit_tree_heads" and r["size"] == 450)
        head["root"] = _flip(head["root"])
        attacks["edited_tree_head"] = rows
        EXPECT["edited_tree_head"] = (False, 300)

        rows = copy()
        cp = next(r for r in rows if r["table"] == "audit_checkpoints" and r["size"] == 520)
        cp["root"] = _flip(cp["root"])
        attacks["edited_checkpoint_root"] = rows
        EXPECT["edited_checkpoint_root"] = (False, None)

        rows = copy()
        rows = [r for r in rows if not (r["table"] == "audit_entries" and r["idx"] == 300)]
        attacks["deleted_middle_entry"] = rows
        EXPECT["deleted_middle_entry"] = (False, 300)

        rows = copy()
        ents = [r for r in _entries(rows) if r["idx"] != 300]
        attacks["deleted_middle_entry_renumbered"] = _renumber(rows, ents)
        EXPECT["deleted_middle_entry_renumbered"] = (False, 300)

        rows = copy()
        a, b = _entry(rows, 100), _entry(rows, 101)
        for k in COLUMNS["audit_entries"][1:]:
            a[k], b[k] = b[k], a[k]
        attacks["swapped_entries"] = rows
        EXPECT["swapped_entries"] = (False, 100)

        forged = make_events(1, fork="-inserted")[0]
        with tempfile.TemporaryDirectory() as t2:
            build(Path(t2) / "one.db", [forged], integrate_at=(1,), checkpoint_at=())
            forged_row = _entries(dump_sqlite(Path(t2) / "one.db"))[0]
        rows = copy()
        ents = _entries(rows)
        ents.insert(400, forged_row)
        attacks["inserted_entry"] = _renumber(rows, ents)
        EXPECT["inserted_entry"] = (False, 400)

        # the thorough attacker: every derived row recomputed, only the signatures kept
        reb = Path(tmp) / "inserted.db"
        build(
            reb,
            [*events[:400], forged, *events[400:519]],
            integrate_at=(100, 300, 450, 520),
            checkpoint_at=(),
        )
        rows = [
            r for r in dump_sqlite(reb) if r["table"] not in ("audit_checkpoints", "audit_keys")
        ]
        rows += [r for r in copy() if r["table"] in ("audit_checkpoints", "audit_keys")]
        attacks["inserted_entry_rehashed"] = rows
        EXPECT["inserted_entry_rehashed"] = (False, 300)

        rows = copy()
        cp = next(r for r in rows if r["table"] == "audit_checkpoints" and r["size"] == 520)
        body, sig = cp["note"].rsplit("\n\n", 1)
        name, blob = sig.rstrip("\n").split(" ", 2)[1:]
        raw = bytearray(base64.b64decode(blob))
        raw[10] ^= 0xFF  # keep the key ID, break the Ed25519 signature
        cp["note"] = f"{body}\n\n\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
        attacks["forged_checkpoint_signature"] = rows
        EXPECT["forged_checkpoint_signature"] = (False, None)

        trunc = Path(tmp) / "trunc.db"
        build(trunc, events[:450], integrate_at=(100, 300, 450), checkpoint_at=(300,))
        attacks["truncated_tail"] = dump_sqlite(trunc)
        extra_files["truncated_tail.checkpoint"] = cp_last
        EXPECT["truncated_tail"] = (True, 450)

        fork = Path(tmp) / "fork.db"
        build(fork, [*events[:400], *make_events(120, fork="-fork")], **plan)  # type: ignore[arg-type]
        attacks["forked_history"] = dump_sqlite(fork)
        extra_files["forked_history.checkpoint"] = cp_last
        EXPECT["forked_history"] = (True, None)

        from audit._note import Signer, write_key_file

        attacker_key = Path(tmp) / "attacker.key"
        write_key_file(attacker_key, Signer(ORIGIN, ATTACKER_SEED))
        rewritten = list(events)
        rewritten[123] = dataclasses.replace(events[123], actor="someone-else@example.jp")
        rekeyed = Path(tmp) / "rekeyed.db"
        build(rekeyed, rewritten, **plan, key_file=attacker_key)  # type: ignore[arg-type]
        attacks["rewritten_with_new_key"] = dump_sqlite(rekeyed)
        EXPECT["rewritten_with_new_key"] = (False, None)

    for name, rows in attacks.items():
        write_dump(out / f"{name}.jsonl", rows if name == "intact" else diff(intact, rows))
    for name, text in extra_files.items():
        (out / name).write_text(text)
    (out / "expect.json").write_text(
        json.dumps({k: {"needs_against": v[0], "first_bad_index": v[1], "needs_key": k in NEEDS_KEY}
                    for k, v in EXPECT.items()}, indent=1, sort_keys=True) + "\n"
    )  # fmt: skip
    return attacks


if __name__ == "__main__":
    made = make_all()
    print(f"wrote {len(made)} dumps to {HERE}")
