"""C2SP signed-note and tlog-checkpoint against the published examples (Go's
golang.org/x/mod/sumdb/note test vectors and the C2SP specs)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from audit._note import (
    Signer,
    Verifier,
    format_checkpoint_body,
    generate_key,
    key_id,
    load_signer,
    open_note,
    parse_checkpoint,
    sign_note,
    write_key_file,
)
from audit.errors import KeyFileError, NoteError

VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what "
    "your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)


def test_key_id_is_the_spec_formula() -> None:
    v = Verifier.parse(VKEY)
    pub = base64.b64decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")[1:]
    assert v.public_key == pub
    want = hashlib.sha256(b"PeterNeumann\n\x01" + pub).digest()[:4]
    assert key_id("PeterNeumann", pub) == want == bytes.fromhex("c74f20a3")
    assert v.vkey == VKEY


def test_signer_from_go_key_matches_go_verifier_and_signs_the_go_note() -> None:
    s = Signer.parse(SKEY)
    assert s.verifier.vkey == VKEY
    assert s.skey() == SKEY
    assert sign_note(TEXT, s) == TEXT + "\n" + PETER_SIG  # byte-exact with Go's TestSign
    assert "AYEKFALV" not in repr(s)


def test_open_go_notes() -> None:
    peter, enoch = Verifier.parse(VKEY), Verifier.parse(ENOCH)
    assert open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter]).verified == ("PeterNeumann",)
    assert open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter, enoch]).verified == (
        "PeterNeumann",
        "EnochRoot",
    )
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])
    with pytest.raises(NoteError, match="malformed"):
        open_note(TEXT + "\n" + PETER_SIG * 101, [peter])
    with pytest.raises(NoteError, match="invalid signature for key PeterNeumann"):
        open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], [peter])
    with pytest.raises(NoteError):
        open_note(TEXT.replace("cryptography", "cryptographY") + "\n" + PETER_SIG, [peter])


@pytest.mark.parametrize(
    "msg",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + "— Bad Name "
        "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    ],
)
def test_malformed_notes_from_go(msg: str) -> None:
    with pytest.raises(NoteError, match="malformed note"):
        open_note(msg, [Verifier.parse(VKEY)])
    with pytest.raises(NoteError):
        open_note(b"\xff" + msg.encode(), [Verifier.parse(VKEY)])


def test_every_mangled_verifier_key_is_refused() -> None:
    """Go's TestNewVerifier: every proper substring and every one-byte change fails."""
    b = VKEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(NoteError):
                    Verifier.parse(b[i:j].decode())
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(NoteError):
            Verifier.parse(mangled.decode("latin-1"))
    for bad in (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(NoteError):
            Verifier.parse(bad)


def test_every_mangled_signer_key_is_refused() -> None:
    b = SKEY.encode()
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(KeyFileError):
            Signer.parse(mangled.decode("latin-1"))
    with pytest.raises(KeyFileError):
        Signer.parse(SKEY[:-4])


def test_checkpoint_round_trip_and_spec_example_shape() -> None:
    # The C2SP tlog-checkpoint example's text (its signer key is not published).
    example = (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    root = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert format_checkpoint_body("example.com/behind-the-sofa", 20852163, root) == example
    s = Signer("example.com/behind-the-sofa", bytes(32))
    note = sign_note(example, s)
    cp = parse_checkpoint(note, [s.verifier])
    assert (cp.origin, cp.size, cp.root_hash, cp.text) == (
        "example.com/behind-the-sofa",
        20852163,
        root,
        note,
    )
    assert note.startswith(example + "\n— example.com/behind-the-sofa ")
    for bad in (
        "example.com/x\n020\n" + base64.b64encode(root).decode() + "\n",  # leading zero
        "example.com/x\n20\nAAAA\n",  # short root
        "example.com/x\n20\n",  # too few lines
    ):
        with pytest.raises(NoteError):
            parse_checkpoint(sign_note(bad, s), [s.verifier])
    with pytest.raises(NoteError):
        parse_checkpoint(note, [Signer("example.com/behind-the-sofa", bytes(range(32))).verifier])


def test_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k"
    s = generate_key("audit.example/log")
    write_key_file(path, s)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_signer(path).verifier == s.verifier
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_key_file(path, generate_key("audit.example/log"))
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by group or others"):
        load_signer(path)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_signer(tmp_path / "missing")
