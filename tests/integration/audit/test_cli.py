"""`enclave audit ...` end to end against a real store (click's runner, in process;
one test runs the real `enclave`-style subprocess)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from audit import MAX_EVENT_BYTES, open_log
from audit._merkle import verify_consistency, verify_inclusion
from audit.cli import audit
from tests.harness.common import tamper_sqlite

ROOT = Path(__file__).resolve().parents[3]


def line(i: int, **over: object) -> str:
    d: dict[str, object] = {
        "id": f"cli-{i}",
        "time": "2026-11-26T10:00:00Z",
        "source": "cli",
        "actor": "operator",
        "action": "auth.logout",
        "enclave": None,
        "outcome": "success",
        "client_ip": None,
        "details": {},
    }
    d.update(over)
    return json.dumps(d)


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(audit, list(args), input=stdin)


def test_append_checkpoint_verify_proof(store_url: str, key_file: Path, tmp_path: Path) -> None:
    r = run("append", "--store", store_url, stdin="\n".join(line(i) for i in range(5)) + "\n\n")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == {"appended": 5, "first": 0, "last": 4, "tree_size": 5}
    cp_file = tmp_path / "cp5"
    r = run("checkpoint", "--store", store_url, "--key-file", str(key_file), "--out", str(cp_file))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == cp_file.read_text()
    assert r.stdout.startswith("test.enclave/audit\n5\n")
    src = tmp_path / "more.jsonl"
    src.write_text("".join(line(i) + "\n" for i in range(5, 9)))
    assert run("append", "--store", store_url, str(src)).exit_code == 0
    r = run("verify", "--store", store_url, "--against", str(cp_file))
    assert (r.exit_code, r.stdout) == (
        0,
        "OK: 9 entries, 1 checkpoints verified, extends checkpoint at size 5; but only "
        "against verifier keys recorded in the store itself, which whoever can write the "
        "store can replace: check with the log's verifier key kept elsewhere "
        "(enclave audit verify --key)\n",
    )
    p = json.loads(run("proof", "--store", store_url, "--index", "3", "--size", "5").stdout)
    root = base64.b64decode(p["root_hash"])
    verify_inclusion(
        leaf_hash=base64.b64decode(p["leaf_hash"]),
        index=3,
        size=5,
        proof=[base64.b64decode(h) for h in p["hashes"]],
        root=root,
    )
    assert json.loads(base64.b64decode(p["entry"]))["id"] == "cli-3"
    c = json.loads(run("consistency", "--store", store_url, "--old", "5").stdout)
    assert c["size"] == 9
    assert base64.b64decode(c["old_root_hash"]) == root
    verify_consistency(
        old_size=5,
        size=9,
        proof=[base64.b64decode(h) for h in c["hashes"]],
        old_root=root,
        root=base64.b64decode(c["root_hash"]),
    )
    vkey = run("key", "--store", store_url).stdout.strip()
    assert vkey.startswith("test.enclave/audit+")
    assert run("verify", "--store", store_url, "--key", vkey).exit_code == 0
    tail = [json.loads(x) for x in run("tail", "--store", store_url, "-n", "2").stdout.splitlines()]
    assert [(t["index"], t["id"]) for t in tail] == [(7, "cli-7"), (8, "cli-8")]
    r = run("proof", "--store", store_url, "--index", "9")
    assert r.exit_code == 2
    assert "index 9 is not in the tree of size 9" in r.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"id": "x",\n', "line 2: malformed JSON"),
        (line(1, extra=True), "line 2, field 'extra': unknown field"),
        (
            json.dumps({k: v for k, v in json.loads(line(1)).items() if k != "actor"}),
            "line 2, field 'actor': missing",
        ),
        (line(1, outcome="maybe"), "line 2, field 'outcome': must be one of"),
        (
            line(1, action="workspace.file.get", details={"path": "x" * MAX_EVENT_BYTES}),
            "line 2, field 'details",
        ),
        (line(1, details={"bytes": 1.5}), "line 2, field 'details.bytes'"),
    ],
)
def test_bad_input_exits_2_naming_line_and_field_and_appends_nothing(
    store_url: str, text: str, message: str
) -> None:
    r = run("append", "--store", store_url, stdin=line(0) + "\n" + text + "\n" + line(2) + "\n")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.startswith(f"Error: {message}"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    with open_log(store_url) as log:
        assert log.sequenced() == 0


def test_oversize_line(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/a.db"
    r = run("append", "--store", url, stdin=line(0) + "\n" + "x" * (3 * MAX_EVENT_BYTES) + "\n")
    assert r.exit_code == 2
    assert r.stderr.startswith("Error: line 2: line is 196608 bytes")


def test_keygen_and_key_errors(tmp_path: Path) -> None:
    key = tmp_path / "k"
    r = run("keygen", "--name", "audit.example.org/enclave", "--out", str(key))
    assert r.exit_code == 0
    assert r.stdout.startswith("audit.example.org/enclave+")
    assert key.stat().st_mode & 0o777 == 0o600
    r = run("keygen", "--name", "audit.example.org/enclave", "--out", str(key))
    assert r.exit_code == 2
    assert "refusing to overwrite" in r.stderr
    r = run("keygen", "--name", "bad name", "--out", str(tmp_path / "k2"))
    assert r.exit_code == 2
    assert "invalid key name" in r.stderr
    url = f"sqlite://{tmp_path}/a.db"
    r = run("checkpoint", "--store", url, "--key-file", str(tmp_path / "nope"))
    assert r.exit_code == 2
    assert "does not exist" in r.stderr
    r = run("verify", "--store", url, "--key", "not-a-key")
    assert r.exit_code == 2
    assert "verifier key" in r.stderr
    r = run("verify", "--store", "ftp://x")
    assert r.exit_code == 2
    assert "unknown store URL scheme" in r.stderr


def test_verify_streams_with_progress(tmp_path: Path, key_file: Path) -> None:
    url = f"sqlite://{tmp_path}/big.db"
    with open_log(url, signer_key_path=key_file) as log:
        from audit import Event

        log.append(
            [
                Event(
                    id=f"b{i}",
                    time="2026-11-26T10:00:00Z",
                    source="cli",
                    actor="a",
                    action="auth.logout",
                    outcome="success",
                )
                for i in range(50_000)
            ]
        )
        log.integrate()
        log.checkpoint()
    r = run("verify", "--store", url, "--progress")
    assert r.exit_code == 0
    assert r.stderr.splitlines() == ["verify: 50000/50000 entries (100%)"]  # one per 65,536


def test_the_real_command_in_a_subprocess(tmp_path: Path, key_file: Path) -> None:
    """The real `enclave` program: stdout carries only the exact note, logs go to stderr."""
    url = f"sqlite://{tmp_path}/p.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    enclave = Path(sys.executable).with_name("enclave")
    assert enclave.exists(), "the enclave entry point is missing: run `make setup`"
    base = [str(enclave), "audit"]
    p = subprocess.run(
        [*base, "append", "--store", url],
        input=line(0) + "\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    p = subprocess.run(
        [*base, "checkpoint", "--store", url, "--key-file", str(key_file)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 0
    assert p.stdout.startswith("test.enclave/audit\n1\n")
    assert p.stdout.count("\n") == 5
    vkey = run("key", "--store", url).stdout.strip()
    p = subprocess.run(
        [*base, "verify", "--store", url, "--key", vkey, "--strict"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert (p.returncode, p.stdout) == (0, "OK: 1 entries, 1 checkpoints verified\n")


def test_verify_in_worker_processes_finds_what_one_process_finds(
    tmp_path: Path, key_file: Path
) -> None:
    """Two segments (65,536 entries each at most) scanned by two workers: same result."""
    import threading

    from audit import Event, verify_store

    url = f"sqlite://{tmp_path}/w.db"
    with open_log(url, signer_key_path=key_file) as log:
        for start in range(0, 70_000, 10_000):
            log.append(
                [
                    Event(id=f"w{i}", time="2026-11-26T10:00:00Z", source="cli", actor=f"a{i % 9}",
                          action="auth.logout", outcome="success")
                    for i in range(start, start + 10_000)
                ]
            )  # fmt: skip
        log.integrate()
        log.checkpoint()
        one = verify_store(log.store)
        two = verify_store(log.store, workers=2)  # forked: this program has one thread
        spawned: list[object] = []  # from a thread, as the service does: spawned workers
        t = threading.Thread(target=lambda: spawned.append(verify_store(log.store, workers=2)))
        t.start()
        t.join()
        assert one.ok
        assert two.ok
        assert spawned == [two]
        assert one.root_hash == two.root_hash == log.root_hash()
    tamper_sqlite(tmp_path / "w.db", "UPDATE audit_entries SET actor = 'x' WHERE idx = 68000")
    r = run("verify", "--store", url, "--workers", "2", "--no-progress")
    assert r.exit_code == 1
    assert r.stderr.startswith("verify: FAILED at index 68000: ")
