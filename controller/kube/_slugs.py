"""Every object name comes from here: one collision-safe slug helper.

Like kubespawner's ``slugs.safe_slug``: a name that is already a DNS-1123 label,
short enough and free of ``--`` is used unchanged; anything else is lowered,
stripped to ``[a-z0-9-]``, truncated and given ``--`` plus a hash of the original.
A changed name always contains ``--`` and an unchanged one never does, so two
different inputs can only meet through a collision of the hash itself.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["prefixed_slug", "safe_slug"]

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HASH_LENGTH = 10


def safe_slug(name: str, *, max_length: int = 63) -> str:
    """``name`` as a DNS-1123 label of at most ``max_length`` characters, collision-safe."""
    if max_length < _HASH_LENGTH + 3:
        raise ValueError(f"max_length must be at least {_HASH_LENGTH + 3}")
    if _LABEL.match(name) and len(name) <= max_length and "--" not in name:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_LENGTH]
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    base = base[: max_length - _HASH_LENGTH - 2].strip("-") or "x"
    return f"{base}--{digest}"


def prefixed_slug(prefix: str, name: str, *, max_length: int = 63) -> str:
    """``prefix-<safe_slug(name)>`` within ``max_length``; ``prefix`` must itself be a label."""
    if not _LABEL.match(prefix) or "--" in prefix:
        raise ValueError(f"prefix {prefix!r} must be a DNS-1123 label without '--'")
    return f"{prefix}-{safe_slug(name, max_length=max_length - len(prefix) - 1)}"
