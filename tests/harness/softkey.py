"""A software WebAuthn authenticator (P-256, attestation "none") for tests and benchmarks.

It builds real CTAP2 authenticator data, client data and ES256 signatures, so the
portal's py_webauthn verification runs unmodified; knobs flip the flags (UV, BE)
and let tests forge wrong origins, RP IDs and challenges.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import encode_cbor

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
AAGUID = bytes.fromhex("01020304050607080102030405060708")


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@dataclass
class SoftKey:
    rp_id: str = "localhost"
    origin: str = "http://localhost:8000"
    uv: bool = True
    backup_eligible: bool = False
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    cred_id: bytes = field(default_factory=lambda: os.urandom(32))
    sign_count: int = 0
    aaguid: bytes = AAGUID
    # Packed attestation: (attestation key, [leaf DER, ...]); None gives fmt "none";
    # SELF gives packed self attestation (signed with the credential key, no x5c).
    attestation: tuple[ec.EllipticCurvePrivateKey, list[bytes]] | str | None = None

    def _flags(self, *, attested: bool) -> int:
        f = UP | (UV if self.uv else 0) | (BE | BS if self.backup_eligible else 0)
        return f | (AT if attested else 0)

    def _cose(self) -> bytes:
        n = self.key.public_key().public_numbers()
        return bytes(
            encode_cbor(
                {1: 2, 3: -7, -1: 1, -2: n.x.to_bytes(32, "big"), -3: n.y.to_bytes(32, "big")}
            )
        )

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()

    def register(
        self,
        options_json: str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
    ) -> dict[str, Any]:
        opts = json.loads(options_json)
        rp_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        auth_data = (
            rp_hash
            + bytes([self._flags(attested=True)])
            + struct.pack(">I", self.sign_count)
            + self.aaguid
            + struct.pack(">H", len(self.cred_id))
            + self.cred_id
            + self._cose()
        )
        cdj = self._client_data("webauthn.create", challenge or opts["challenge"], origin)
        signed = auth_data + hashlib.sha256(cdj).digest()
        stmt: dict[str, Any]
        if self.attestation is None:
            fmt, stmt = "none", {}
        elif self.attestation == "self":
            fmt = "packed"
            stmt = {"alg": -7, "sig": self.key.sign(signed, ec.ECDSA(hashes.SHA256()))}
        else:
            att_key, x5c = self.attestation  # type: ignore[misc]
            fmt = "packed"
            stmt = {"alg": -7, "sig": att_key.sign(signed, ec.ECDSA(hashes.SHA256())), "x5c": x5c}
        att = bytes(encode_cbor({"fmt": fmt, "attStmt": stmt, "authData": auth_data}))
        return {
            "id": b64u(self.cred_id),
            "rawId": b64u(self.cred_id),
            "type": "public-key",
            "response": {"clientDataJSON": b64u(cdj), "attestationObject": b64u(att)},
            "clientExtensionResults": {},
        }

    def get_assertion(
        self,
        options_json: str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        uv: bool | None = None,
    ) -> dict[str, Any]:
        opts = json.loads(options_json)
        self.sign_count += 1
        rp_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        flags = self._flags(attested=False)
        if uv is False:
            flags &= ~UV
        auth_data = rp_hash + bytes([flags]) + struct.pack(">I", self.sign_count)
        cdj = self._client_data("webauthn.get", challenge or opts["challenge"], origin)
        sig = self.key.sign(auth_data + hashlib.sha256(cdj).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64u(self.cred_id),
            "rawId": b64u(self.cred_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64u(cdj),
                "authenticatorData": b64u(auth_data),
                "signature": b64u(sig),
                "userHandle": None,
            },
            "clientExtensionResults": {},
        }


def attestation_ca(
    aaguid: bytes, *, with_aaguid_extension: bool = True
) -> tuple[bytes, ec.EllipticCurvePrivateKey, list[bytes]]:
    """A test vendor CA (PEM) and an attestation key + leaf certificate for one model."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Vendor Attestation Root")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Vendor"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Authenticator Attestation"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Test Fingerprint Key"),
        ]
    )
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if with_aaguid_extension:
        b = b.add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4"), b"\x04\x10" + aaguid
            ),
            critical=False,
        )
    leaf = b.sign(ca_key, hashes.SHA256())
    return (
        ca.public_bytes(serialization.Encoding.PEM),
        leaf_key,
        [leaf.public_bytes(serialization.Encoding.DER)],
    )
