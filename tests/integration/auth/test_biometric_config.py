"""Issue #11 item 8: biometric was impossible to configure, so tommo-strong could never be
entered. ``portal serve --biometric-aaguid ... --attestation-root packed=FILE`` now
configures it; the test's own attestation CA plays the vendor, and the software
authenticator signs a packed attestation with a leaf certificate that CA issued."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from auth import MemoryAuditSink, Portal, create_app
from auth._cli import biometric_settings
from auth.cli import portal as portal_cli
from tests.harness.softkey import SoftKey, attestation_ca

from .helpers import FakeClock, approve_pending, make_settings
from .test_web_flows import ADMIN, enrol_alice, login, register
from .test_webauthn_http import step_up

BIO_AAGUID = bytes.fromhex("0badc0de0badc0de0badc0de0badc0de")
BIO_AAGUID_STR = "0badc0de-0bad-c0de-0bad-c0de0badc0de"


def test_tommo_strong_is_entered_with_a_key_attested_by_the_configured_root(
    tmp_path: Path,
) -> None:
    root_pem, att_key, x5c = attestation_ca(BIO_AAGUID)
    (tmp_path / "vendor-root.pem").write_bytes(root_pem)
    aaguids, roots = biometric_settings(
        aaguids=[f"{BIO_AAGUID_STR.upper()}=fpt"],
        roots=[f"packed={tmp_path / 'vendor-root.pem'}"],
    )
    settings = dataclasses.replace(
        make_settings(tmp_path), biometric_aaguids=aaguids, attestation_roots=roots
    )
    clock, sink = FakeClock(), MemoryAuditSink()
    portal = Portal(settings=settings, sink=sink, clock=clock)
    client = TestClient(
        create_app(portal=portal), base_url="https://localhost", client=("192.0.2.10", 50000)
    )
    key = SoftKey(origin="https://localhost", aaguid=BIO_AAGUID, attestation=(att_key, x5c))
    secret = enrol_alice(client, clock, key=key)
    creds = client.get("/api/admin/users", headers=ADMIN).json()[0]["credentials"]
    assert [c["biometric_attested"] for c in creds if c["kind"] == "webauthn"] == [True]
    approve_pending(client, "alice")
    login(client, secret, clock)
    register(client, "cohort-strong", "tommo-strong", ["alice"])
    status, text = step_up(client, "cohort-strong", key)
    assert status == 303, text
    allowed = [e for e in sink.events if e["action"] == "enclave.entry.allowed"][-1]
    assert allowed["enclave"] == "cohort-strong"
    assert "biometric" in allowed["details"]["categories"]
    assert "fpt" in allowed["details"]["amr"]
    assert allowed["details"]["acr"] == "urn:enclave:aal3"


def test_the_same_key_without_the_root_is_not_biometric(tmp_path: Path) -> None:
    """An allow-listed AAGUID whose chain leads to another vendor's root is refused."""
    _root, att_key, x5c = attestation_ca(BIO_AAGUID)
    other_root, _k, _x = attestation_ca(BIO_AAGUID)
    (tmp_path / "other-root.pem").write_bytes(other_root)
    aaguids, roots = biometric_settings(
        aaguids=[f"{BIO_AAGUID_STR}=fpt"], roots=[f"packed={tmp_path / 'other-root.pem'}"]
    )
    settings = dataclasses.replace(
        make_settings(tmp_path), biometric_aaguids=aaguids, attestation_roots=roots
    )
    clock = FakeClock()
    portal = Portal(settings=settings, sink=MemoryAuditSink(), clock=clock)
    client = TestClient(
        create_app(portal=portal), base_url="https://localhost", client=("192.0.2.10", 50000)
    )
    key = SoftKey(origin="https://localhost", aaguid=BIO_AAGUID, attestation=(att_key, x5c))
    with pytest.raises(AssertionError):
        enrol_alice(client, clock, key=key)  # the registration itself is refused (400)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--biometric-aaguid", f"{BIO_AAGUID_STR}=fpt"], "needs at least one --attestation-root"),
        (["--biometric-aaguid", "not-an-aaguid=fpt"], "dashed AAGUID"),
        (["--biometric-aaguid", f"{BIO_AAGUID_STR}=pin"], "fpt|face|iris|retina|vbm"),
        (["--attestation-root", "nonsense=/x.pem"], "FORMAT one of"),
        (["--attestation-root", "packed=/no/such/root.pem"], "cannot read"),
    ],
)
def test_serve_refuses_a_biometric_configuration_that_cannot_work(
    tmp_path: Path, args: list[str], message: str
) -> None:
    keys = tmp_path / "keys"
    assert CliRunner().invoke(portal_cli, ["init-keys", str(keys)]).exit_code == 0
    env = {
        "ENCLAVE_PORTAL_STORE": f"sqlite:///{tmp_path / 'id.db'}",
        "ENCLAVE_PORTAL_KEY_FILE": str(keys),
        "ENCLAVE_PORTAL_AUDIT_LOG": f"unsafe-jsonl:{tmp_path / 'audit.jsonl'}",
    }
    r = CliRunner().invoke(portal_cli, ["serve", "--issuer", "https://localhost", *args], env=env)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "id.db").exists()  # refused before anything was opened
