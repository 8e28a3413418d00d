"""Benchmark: the portal's hot paths on this machine.

Run with `make bench`, or `.venv/bin/python -P benchmarks/portal.py`.

  * TOTP verification (``Factors.verify_totp``: decrypt seed, check +-1 step,
    atomic single-use claim in SQLite, reset counter, audit) -- target p99 <= 5 ms;
  * WebAuthn assertion verification (py_webauthn ``verify_authentication_response``
    alone, and the whole ``finish_webauthn_authentication``) -- target p99 <= 10 ms;
  * the token endpoint over real HTTP (uvicorn, one process, durable file audit
    sink, SQLite store) with pre-issued codes -- target >= 500 requests/s;
  * argon2id: the parameters in force and the time per hash.
Last line: one JSON object.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import webauthn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auth import Argon2Params, MemoryAuditSink, PasswordHasher, Portal, PortalSettings  # noqa: E402
from auth._crypto import KeyRing, hash_token  # noqa: E402
from auth._factors import totp_at  # noqa: E402
from tests.harness.softkey import SoftKey  # noqa: E402

N_TOTP = 2000
N_WEBAUTHN = 2000
N_TOKENS = 3000
N_ARGON = 10


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] * 1000


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make_portal(tmp: Path, clock: Clock | None = None) -> Portal:
    (tmp / "keys").write_text(KeyRing.generate().to_text())
    s = PortalSettings(
        issuer="http://localhost:8000",
        store_url=f"sqlite:///{tmp / 'id.db'}",
        key_file=tmp / "keys",
        audit_target=f"unsafe-jsonl:{tmp / 'audit.jsonl'}",
        admin_token_hash=hash_token("bench-admin"),
        argon2=Argon2Params(time_cost=1, memory_cost_kib=8192, parallelism=1),
    )
    kw = {"clock": clock} if clock else {}
    return Portal(settings=s, sink=MemoryAuditSink(), **kw)


def bench_totp(tmp: Path) -> dict[str, float]:
    clock = Clock()
    p = make_portal(tmp, clock)
    tier = p.login_tier
    user = p.store.create_user(
        user_id="u",
        username="bench",
        display_name="B",
        roles=frozenset(),
        status="active",
        locale="en",
        now=clock(),
    )
    e = p.factors.begin_totp_enrolment(user=user, session_hash="s")
    p.factors.finish_totp_enrolment(
        user=user,
        sealed_secret_b64=e.sealed_secret_b64,
        session_hash="s",
        code=totp_at(secret_b32=e.secret_b32, for_time=int(clock())),
        client_ip=None,
    )
    times = []
    for _ in range(N_TOTP):
        clock.now += 30  # a fresh step each time (each step is single-use)
        code = totp_at(secret_b32=e.secret_b32, for_time=int(clock()))
        t0 = time.perf_counter()
        p.factors.verify_totp(user=user, code=code, tier=tier, client_ip="192.0.2.1")
        times.append(time.perf_counter() - t0)
    (cred,) = p.store.list_credentials(user_id="u", kind="totp")
    check = []
    for _ in range(N_TOTP):
        clock.now += 30
        code = totp_at(secret_b32=e.secret_b32, for_time=int(clock()))
        t0 = time.perf_counter()
        seed = p.keyring.open(sealed=cred.secret, context=f"totp:{cred.id}").decode()
        assert p.factors._match_step(secret=seed, code=code) is not None
        check.append(time.perf_counter() - t0)
    return {
        "totp_verify_p50_ms": pct(times, 50),
        "totp_verify_p99_ms": pct(times, 99),
        "totp_check_p50_ms": pct(check, 50),
        "totp_check_p99_ms": pct(check, 99),
    }


def bench_webauthn(tmp: Path) -> dict[str, float]:
    p = make_portal(tmp)
    tier = p.catalog.get("nbdc-high")
    user = p.store.create_user(
        user_id="u",
        username="bench",
        display_name="B",
        roles=frozenset(),
        status="active",
        locale="en",
        now=time.time(),
    )
    key = SoftKey(origin="http://localhost:8000")
    opts = p.factors.begin_webauthn_registration(
        user=user, session_hash="s", user_verification=True
    )
    cred = p.factors.finish_webauthn_registration(
        user=user,
        session_hash="s",
        credential_json=json.dumps(key.register(opts)),
        client_ip=None,
        session_aal=None,
    )
    lib, full = [], []
    for _ in range(N_WEBAUTHN):
        challenge = secrets.token_bytes(32)
        opts_json = json.dumps(
            {"challenge": base64.urlsafe_b64encode(challenge).rstrip(b"=").decode()}
        )
        payload = key.get_assertion(opts_json)
        t0 = time.perf_counter()
        webauthn.verify_authentication_response(
            credential=payload,
            expected_challenge=challenge,
            expected_rp_id="localhost",
            expected_origin="http://localhost:8000",
            credential_public_key=cred.secret,
            credential_current_sign_count=key.sign_count - 1,
            require_user_verification=True,
        )
        lib.append(time.perf_counter() - t0)
    for _ in range(N_WEBAUTHN // 4):
        opts = p.factors.begin_webauthn_authentication(
            user=user, session_hash="s", user_verification=True
        )
        body = json.dumps(key.get_assertion(opts))
        t0 = time.perf_counter()
        p.factors.finish_webauthn_authentication(
            user=user, session_hash="s", credential_json=body, tier=tier, client_ip="192.0.2.1"
        )
        full.append(time.perf_counter() - t0)
    return {
        "webauthn_verify_p50_ms": pct(lib, 50),
        "webauthn_verify_p99_ms": pct(lib, 99),
        "webauthn_finish_p50_ms": pct(full, 50),
        "webauthn_finish_p99_ms": pct(full, 99),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (Linux /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def bench_token(tmp: Path, *, workers: int = 1) -> tuple[float, float]:
    """Token endpoint over HTTP: pre-issued codes, client_secret_basic, PKCE S256."""
    keys = tmp / "keys"
    keys.write_text(KeyRing.generate().to_text())
    (tmp / "admin").write_text("bench-admin")
    (tmp / "admin").chmod(0o600)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    store_url = f"sqlite:///{tmp / 'id.db'}"
    common = [
        "--store",
        store_url,
        "--key-file",
        str(keys),
        "--audit-log",
        f"unsafe-jsonl:{tmp / 'audit.jsonl'}",
    ]
    # Register the enclave and client, and the user, through the CLI's services.
    s = PortalSettings(
        issuer=base,
        store_url=store_url,
        key_file=keys,
        audit_target=f"unsafe-jsonl:{tmp / 'audit.jsonl'}",
    )
    p = Portal(settings=s, sink=MemoryAuditSink())
    user = p.store.create_user(
        user_id="u",
        username="bench",
        display_name="B",
        roles=frozenset(),
        status="active",
        locale="en",
        now=time.time(),
    )
    reg = p.register_enclave(
        name="bench",
        tier="nbdc-standard",
        display_name="",
        members=[("bench", "researcher")],
        networks=[],
        hub_url="",
        client_id="hub-bench",
        redirect_uris=["http://localhost/cb"],
        actor="bench",
    )
    secret = reg.client_secret
    assert secret
    sid = hash_token("session")
    p.store.create_session(id_hash=sid, csrf="x", client_ip=None, now=time.time())
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    codes = []
    for _ in range(N_TOKENS):
        c = secrets.token_urlsafe(32)
        p.store.put_code(
            code_hash=hash_token(c),
            expires_at=time.time() + 3600,
            payload={
                "client_id": "hub-bench",
                "redirect_uri": "http://localhost/cb",
                "user_id": user.id,
                "challenge": challenge,
                "nonce": "n",
                "scope": "openid",
                "enclave": "bench",
                "amr": ["pwd", "otp", "mfa"],
                "acr": "urn:enclave:aal2",
                "categories": ["knowledge", "possession"],
                "auth_time": int(time.time()),
                "sid": sid[:32],
                "session": sid,
            },
        )
        codes.append(c)
    p.store.close()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "auth",
            "serve",
            *common,
            "--issuer",
            base,
            "--port",
            str(port),
            "--admin-token-file",
            str(tmp / "admin"),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        # A lean keep-alive HTTP/1.1 client on raw sockets, so the load generator
        # (which shares the 2 cores) costs little next to the server.
        auth_header = base64.b64encode(f"hub-bench:{secret}".encode()).decode()

        def request_bytes(code: str) -> bytes:
            body = urllib.parse.urlencode(
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": "http://localhost/cb",
                    "code_verifier": verifier,
                }
            ).encode()
            head = (
                f"POST /oidc/token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Basic {auth_header}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            return head.encode() + body

        ok = [0]
        lock = threading.Lock()

        def worker(batch: list[str]) -> None:
            sock = socket.create_connection(("127.0.0.1", port))
            f = sock.makefile("rb")
            good = 0
            for code in batch:
                sock.sendall(request_bytes(code))
                status = f.readline()
                length = 0
                while (line := f.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                f.read(length)
                good += status.startswith(b"HTTP/1.1 200")
            sock.close()
            with lock:
                ok[0] += good

        worker(codes[:50])  # warm-up
        rest = codes[50:]
        n_workers = 8
        batches = [rest[i::n_workers] for i in range(n_workers)]
        cpu0 = _cpu_s(proc.pid)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(b,)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        server_cpu = _cpu_s(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    n = len(codes) - 50
    if ok[0] != len(codes):
        raise RuntimeError(f"only {ok[0]} of {len(codes)} token requests succeeded")
    return n / elapsed, server_cpu / n * 1000


def bench_argon2() -> dict[str, object]:
    h = PasswordHasher()
    times = []
    for _ in range(N_ARGON):
        t0 = time.perf_counter()
        h.hash(password="correct horse battery staple")
        times.append(time.perf_counter() - t0)
    prm = h.params
    return {
        "argon2id_time_cost": prm.time_cost,
        "argon2id_memory_kib": prm.memory_cost_kib,
        "argon2id_parallelism": prm.parallelism,
        "argon2id_hash_ms_median": sorted(times)[len(times) // 2] * 1000,
    }


def main() -> None:
    out: dict[str, object] = {"benchmark": "portal"}
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(Path(d) / "t")
        out.update(bench_totp(Path(d) / "t"))
    with tempfile.TemporaryDirectory() as d:
        out.update(bench_webauthn(Path(d)))
    with tempfile.TemporaryDirectory() as d:
        rate, cpu = bench_token(Path(d))
        out["token_requests_per_s"] = rate
        out["token_server_cpu_ms_per_request"] = cpu
    with tempfile.TemporaryDirectory() as d:
        # Two server processes sharing the store (serve --workers 2), with the store's
        # only durability setting (synchronous=FULL: every commit survives a power loss).
        rate, cpu = bench_token(Path(d), workers=2)
        out["token_requests_per_s_2_workers"] = rate
        out["token_server_cpu_ms_per_request_2_workers"] = cpu
    out.update(bench_argon2())
    out.update(
        {
            "n": {
                "totp": N_TOTP,
                "webauthn": N_WEBAUTHN,
                "token": N_TOKENS - 50,
                "argon2": N_ARGON,
            },
            "unit": "ms (latencies), requests/s (token), KiB (memory)",
        }
    )
    for k, v in out.items():
        if isinstance(v, float):
            out[k] = round(v, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
