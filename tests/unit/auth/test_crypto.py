"""AES-GCM key ring (rotation, binding to context) and argon2id hashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from auth._crypto import Argon2Params, KeyRing, KeyRingError, PasswordHasher


def test_rotation_first_key_seals_all_keys_open(tmp_path: Path) -> None:
    old = KeyRing.generate(kid="old")
    sealed = old.seal(plaintext=b"seed", context="totp:1")
    new = KeyRing(keys=(KeyRing.generate(kid="new").keys[0], old.keys[0]))
    assert new.open(sealed=sealed, context="totp:1") == b"seed"
    assert new.needs_reseal(sealed=sealed)
    resealed = new.seal(plaintext=b"seed", context="totp:1")
    assert not new.needs_reseal(sealed=resealed)
    path = tmp_path / "keys"
    path.write_text("# comment\n" + new.to_text())
    assert KeyRing.from_file(path=path) == new
    # Dropping the old key before re-sealing is caught, not silently wrong.
    only_new = KeyRing(keys=(new.keys[0],))
    with pytest.raises(KeyRingError, match="No key 'old'"):
        only_new.open(sealed=sealed, context="totp:1")


def test_context_binds_ciphertext_to_its_row() -> None:
    ring = KeyRing.generate()
    sealed = ring.seal(plaintext=b"seed", context="totp:1")
    with pytest.raises(KeyRingError, match="integrity"):
        ring.open(sealed=sealed, context="totp:2")


@pytest.mark.parametrize(
    ("text", "msg"),
    [("k1", "expected 'kid:base64key'"), ("k1:!!!", "not valid base64"), ("k1:AAAA", "32 bytes")],
)
def test_bad_key_files_are_refused(tmp_path: Path, text: str, msg: str) -> None:
    path = tmp_path / "keys"
    path.write_text(text + "\n")
    with pytest.raises(KeyRingError, match=msg):
        KeyRing.from_file(path=path)


def test_argon2id_hash_and_verify() -> None:
    h = PasswordHasher(params=Argon2Params(time_cost=1, memory_cost_kib=1024, parallelism=1))
    stored = h.hash(password="correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert h.verify(stored=stored, password="correct horse battery")
    assert not h.verify(stored=stored, password="correct horse batterz")
    assert not h.verify(stored="garbage", password="x")
