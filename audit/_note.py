"""C2SP signed-note (Ed25519) and C2SP tlog-checkpoint, byte-exact.

Formats (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint), compatible
with Go's ``golang.org/x/mod/sumdb/note``:

- key ID: the first 4 bytes of ``SHA-256(name || 0x0A || 0x01 || public key)``;
- verifier key: ``name+<8 hex digits of key ID>+base64(0x01 || public key)``;
- signer key file: ``PRIVATE+KEY+name+<key ID hex>+base64(0x01 || seed)`` (Go's format);
- a note: text ending in a newline, a blank line, then signature lines
  ``U+2014 U+0020 name U+0020 base64(key ID || signature) U+000A``;
- a checkpoint's text: origin, tree size (decimal), base64 root hash, then optional
  extension lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import KeyFileError, NoteError
from .files import create_exclusive

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "Signer",
    "Verifier",
    "format_checkpoint_body",
    "generate_key",
    "key_id",
    "load_signer",
    "open_note",
    "parse_checkpoint",
    "sign_note",
    "write_key_file",
]

ALG_ED25519: Final[int] = 0x01
_MAX_SIGS: Final[int] = 100
_SIG_PREFIX: Final[str] = "\u2014 "
_UNICODE_SPACE = re.compile(r"\s")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError("invalid base64") from None


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not _UNICODE_SPACE.search(name) and name.isprintable()


def key_id(name: str, public_key: bytes) -> bytes:
    """The C2SP key ID: ``SHA-256(name || 0x0A || 0x01 || public_key)[:4]``."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    ).digest()[:4]


@dataclass(frozen=True, slots=True)
class Verifier:
    """An Ed25519 note verifier: a key name and a 32-byte public key."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        return key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key string, ``name+hexid+base64(0x01||pubkey)``."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_ED25519]) + self.public_key)}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Parse a verifier key string; raise :class:`NoteError` if malformed in any way."""
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise NoteError("a verifier key has the form name+hexid+base64key")
        name, hexid, b64key = parts
        if not _valid_name(name):
            raise NoteError("invalid key name in verifier key")
        if not re.fullmatch(r"[0-9a-f]{8}", hexid):
            raise NoteError("verifier key ID must be 8 lower-case hex digits")
        raw = _unb64(b64key)
        if _b64(raw) != b64key:
            raise NoteError("verifier key is not canonical base64")
        if len(raw) < 1 or raw[0] != ALG_ED25519:
            raise NoteError("verifier key is not an Ed25519 key")
        if len(raw) != 33:
            raise NoteError("Ed25519 verifier key must be 32 bytes")
        v = cls(name, raw[1:])
        if v.key_id.hex() != hexid:
            raise NoteError("verifier key ID does not match the key")
        try:
            Ed25519PublicKey.from_public_bytes(v.public_key)
        except ValueError:
            raise NoteError("verifier key is not a valid Ed25519 point") from None
        return v

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature on ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class Signer:
    """An Ed25519 note signer loaded from a key; the private key never leaves it."""

    __slots__ = ("_key", "name", "verifier")

    def __init__(self, name: str, seed: bytes):
        if not _valid_name(name):
            raise KeyFileError("invalid key name (must be non-empty, no spaces, no '+')")
        if len(seed) != 32:
            raise KeyFileError("an Ed25519 seed is 32 bytes")
        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        pub = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = Verifier(name, pub)

    def __repr__(self) -> str:  # never show key material
        return f"Signer({self.verifier.vkey!r})"

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature on ``message``."""
        return self._key.sign(message)

    @classmethod
    def parse(cls, skey: str) -> Signer:
        """Parse ``PRIVATE+KEY+name+hexid+base64(0x01||seed)`` (Go's signer key format)."""
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise KeyFileError("a signing key has the form PRIVATE+KEY+name+hexid+base64key")
        _, _, name, hexid, b64key = parts
        if not re.fullmatch(r"[0-9a-f]{8}", hexid):
            raise KeyFileError("signing key ID must be 8 lower-case hex digits")
        try:
            raw = _unb64(b64key)
        except NoteError:
            raise KeyFileError("signing key is not base64") from None
        if _b64(raw) != b64key or len(raw) != 33 or raw[0] != ALG_ED25519:
            raise KeyFileError("signing key is not a canonical Ed25519 seed")
        signer = cls(name, raw[1:])
        if signer.verifier.key_id.hex() != hexid:
            raise KeyFileError("signing key ID does not match the key")
        return signer

    def skey(self) -> str:
        """The signer key string (secret: write it only to a protected file)."""
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        key = _b64(bytes([ALG_ED25519]) + seed)
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{key}"


def generate_key(name: str) -> Signer:
    """A fresh Ed25519 signer named ``name`` (only ``keygen`` calls this)."""
    return Signer(name, os.urandom(32))


def write_key_file(path: Path, signer: Signer) -> None:
    """Write ``signer`` to a new file readable only by its owner; refuse to overwrite.

    Steps: create with O_EXCL and mode 0600, write, fsync, close, fsync the directory.
    """
    data = (signer.skey() + "\n").encode("ascii")
    try:
        create_exclusive(path, data)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a signing key") from None
    except OSError as e:
        raise KeyFileError(f"cannot create {path}: {e.strerror}") from None


def load_signer(path: Path) -> Signer:
    """Load a signing key file; refuse one that group or others can read."""
    try:
        st = path.stat()
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise KeyFileError(
            f"signing key file {path} does not exist (make one with `enclave audit keygen`)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"cannot read signing key file {path}: {e}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"signing key file {path} is readable by group or others; chmod 600 it")
    return Signer.parse(text)


def _check_text(text: str) -> None:
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("malformed note")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("malformed note")


def sign_note(text: str, signer: Signer) -> str:
    """The signed note: ``text``, a blank line and ``signer``'s signature line."""
    _check_text(text)
    sig = signer.sign(text.encode("utf-8"))
    blob = _b64(signer.verifier.key_id + sig)
    return f"{text}\n{_SIG_PREFIX}{signer.name} {blob}\n"


@dataclass(frozen=True, slots=True)
class OpenedNote:
    """A note whose signature by at least one trusted key verified."""

    text: str
    verified: tuple[str, ...]  # key names whose signatures verified


def open_note(note: str | bytes, verifiers: Sequence[Verifier]) -> OpenedNote:
    """Verify a signed note against trusted ``verifiers`` (C2SP signed-note rules).

    1. The note is UTF-8 without control characters other than newline, at most 1 MiB.
    2. Split at the last blank line into text and signature lines; each signature line
       is ``— name base64`` with a decoded length of at least 5; at most 100 lines.
    3. Signature lines from unknown keys (name and key ID) are ignored.
    4. A signature line from a known key that does not verify rejects the whole note.
    5. At least one known key's signature must verify.
    """
    if isinstance(note, bytes):
        if len(note) > 1 << 20:
            raise NoteError("malformed note")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("malformed note") from None
    if any(ord(c) < 0x20 and c != "\n" for c in note):  # step 1
        raise NoteError("malformed note")
    split = note.rfind("\n\n")  # step 2
    if split < 0:
        raise NoteError("malformed note")
    text, sigs = note[: split + 1], note[split + 2 :]
    if not sigs.endswith("\n"):
        raise NoteError("malformed note")
    lines = sigs[:-1].split("\n")
    if len(lines) > _MAX_SIGS:
        raise NoteError("malformed note")
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[str] = []
    message = text.encode("utf-8")
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("malformed note")
        rest = line[len(_SIG_PREFIX) :]
        parts = rest.split(" ")
        if len(parts) != 2 or not _valid_name(parts[0]):
            raise NoteError("malformed note")
        name, blob_b64 = parts
        blob = _unb64(blob_b64)
        if len(blob) < 5:
            raise NoteError("malformed note")
        v = known.get((name, blob[:4]))
        if v is None:  # step 3
            continue
        if not v.verify(message, blob[4:]):  # step 4
            raise NoteError(f"invalid signature for key {v.name}+{v.key_id.hex()}")
        if name not in verified:
            verified.append(name)
    if not verified:  # step 5
        raise NoteError("note has no verifiable signatures")
    return OpenedNote(text=text, verified=tuple(verified))


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A signed tree head: origin, size and root hash, and the exact signed note text."""

    origin: str
    size: int
    root_hash: bytes
    text: str
    extensions: tuple[str, ...] = ()

    @property
    def body(self) -> str:
        """The signed part of the note (the checkpoint text itself)."""
        return format_checkpoint_body(self.origin, self.size, self.root_hash, self.extensions)


def format_checkpoint_body(
    origin: str, size: int, root_hash: bytes, extensions: Sequence[str] = ()
) -> str:
    """The tlog-checkpoint note text for a tree head."""
    if not origin or "\n" in origin:
        raise NoteError("checkpoint origin must be one non-empty line")
    if size < 0 or len(root_hash) != 32:
        raise NoteError("checkpoint needs a size >= 0 and a 32-byte root hash")
    ext = "".join(f"{e}\n" for e in extensions)
    return f"{origin}\n{size}\n{_b64(root_hash)}\n{ext}"


def parse_checkpoint(note: str | bytes, verifiers: Sequence[Verifier]) -> Checkpoint:
    """Open a signed checkpoint with trusted ``verifiers`` and parse its text.

    Raises :class:`NoteError` if the signature does not verify or the text is not a
    checkpoint (origin line, decimal size without leading zeroes, base64 32-byte root).
    """
    opened = open_note(note, verifiers)
    lines = opened.text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has at least three lines")
    origin, size_s, root_b64, *ext = lines
    if not origin:
        raise NoteError("checkpoint origin is empty")
    if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size_s):
        raise NoteError("checkpoint size is not a decimal number without leading zeroes")
    root = _unb64(root_b64)
    if len(root) != 32 or _b64(root) != root_b64:
        raise NoteError("checkpoint root hash is not base64 of 32 bytes")
    if any(not e for e in ext):
        raise NoteError("checkpoint extension lines must be non-empty")
    text = note.decode("utf-8") if isinstance(note, bytes) else note
    return Checkpoint(
        origin=origin, size=int(size_s), root_hash=root, text=text, extensions=tuple(ext)
    )
