"""The Enclave files of one directory, read with the shared validator on every pass.

``scan`` is pure with respect to the backend's state: it reads ``*.yaml`` and ``*.yml``
files (not hidden ones), validates each with ``controller.kube``'s ``read_enclave_file``
(the same schema and rules as the CRD), and returns the valid enclaves by name and the
refused files with their problems. Two files naming the same enclave are both refused:
neither silently wins.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from controller.kube import Enclave, InvalidEnclaveError, Problem
from controller.kube._spec import read_enclave_file

__all__ = ["Refused", "Scan", "Served", "scan"]


@dataclass(frozen=True, kw_only=True)
class Served:
    """A valid Enclave file; ``digest`` changes whenever its bytes do."""

    path: Path
    enclave: Enclave
    digest: str


@dataclass(frozen=True, kw_only=True)
class Refused:
    """A file that is not served: the first field at fault and why, in one sentence."""

    path: Path
    digest: str
    error: InvalidEnclaveError

    @property
    def field(self) -> str:
        return self.error.problems[0].field

    @property
    def reason(self) -> str:
        return self.error.problems[0].message


@dataclass(frozen=True, kw_only=True)
class Scan:
    served: dict[str, Served]
    refused: tuple[Refused, ...]


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def scan(directory: Path) -> Scan:
    """Every Enclave file in ``directory``, split into served and refused."""
    found: dict[str, list[Served]] = {}
    refused: list[Refused] = []
    files = sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
    )
    for path in files:
        digest = _digest(path)
        try:
            enclave = read_enclave_file(path)
        except InvalidEnclaveError as e:
            refused.append(Refused(path=path, digest=digest, error=e))
            continue
        found.setdefault(enclave.name, []).append(Served(path=path, enclave=enclave, digest=digest))
    served: dict[str, Served] = {}
    for name, items in found.items():
        if len(items) == 1:
            served[name] = items[0]
            continue
        others = ", ".join(i.path.name for i in items)
        for item in items:
            problem = Problem(
                field="metadata.name", message=f"names {name!r}, as do these files: {others}"
            )
            error = InvalidEnclaveError(source=str(item.path), problems=[problem])
            refused.append(Refused(path=item.path, digest=item.digest, error=error))
    return Scan(served=served, refused=tuple(refused))
