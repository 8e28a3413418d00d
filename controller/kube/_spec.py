"""The typed ``Enclave``: built only from a document the schema accepted.

``load_enclave`` is the one way in: it validates with the same schema and rules as
admission (``_schema.validate_enclave``) and then wraps the values in frozen
dataclasses, so nothing downstream re-checks or meets a malformed spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ._schema import Problem, validate_enclave
from .errors import InvalidEnclaveError

__all__ = [
    "Approval",
    "Dataset",
    "Enclave",
    "Member",
    "Workspace",
    "load_enclave",
    "read_enclave_file",
]


@dataclass(frozen=True, kw_only=True)
class Approval:
    ethics_review_id: str
    data_use_agreement_id: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, kw_only=True)
class Member:
    user: str
    role: str


@dataclass(frozen=True, kw_only=True)
class Dataset:
    name: str
    persistent_volume: str
    mount_path: str


@dataclass(frozen=True, kw_only=True)
class Workspace:
    image: str
    cpu: str
    memory: str
    storage: str


@dataclass(frozen=True, kw_only=True)
class Quarantine:
    """``spec.quarantine``: ``active`` closes the enclave at once; ``by`` who asked."""

    active: bool
    reason: str
    by: str
    at: str


@dataclass(frozen=True, kw_only=True)
class Enclave:
    """One research project, as declared; ``name`` is the resource's ``metadata.name``."""

    name: str
    tier: str
    display_name: str
    approval: Approval
    members: tuple[Member, ...]
    datasets: tuple[Dataset, ...]
    workspace: Workspace
    access_networks: tuple[str, ...]
    quarantine: Quarantine | None = None

    @property
    def quarantined(self) -> bool:
        return self.quarantine is not None and self.quarantine.active


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def load_enclave(document: Any, *, source: str = "Enclave") -> Enclave:
    """Validate ``document`` (an ``Enclave`` resource as a mapping) and wrap it.

    Raises :class:`InvalidEnclaveError` naming every field at fault; ``source`` names
    the input in that message (a file name, or the resource).
    """
    problems = validate_enclave(document)
    if problems:
        raise InvalidEnclaveError(source=source, problems=problems)
    spec: Mapping[str, Any] = document["spec"]
    approval = spec["approval"]
    ws = spec["workspace"]
    name = str(document["metadata"]["name"])
    return Enclave(
        name=name,
        tier=spec["tier"],
        display_name=spec.get("displayName", name),
        approval=Approval(
            ethics_review_id=approval["ethicsReviewId"],
            data_use_agreement_id=approval["dataUseAgreementId"],
            not_before=_time(approval["notBefore"]),
            not_after=_time(approval["notAfter"]),
        ),
        members=tuple(Member(user=m["user"], role=m["role"]) for m in spec["members"]),
        datasets=tuple(
            Dataset(
                name=d["name"], persistent_volume=d["persistentVolume"], mount_path=d["mountPath"]
            )
            for d in spec.get("datasets", [])
        ),
        workspace=Workspace(
            image=ws["image"], cpu=ws["cpu"], memory=ws["memory"], storage=ws["storage"]
        ),
        access_networks=tuple(spec.get("accessNetworks", [])),
        quarantine=_quarantine(spec.get("quarantine")),
    )


def _quarantine(value: Mapping[str, Any] | None) -> Quarantine | None:
    if value is None:
        return None
    return Quarantine(
        active=bool(value["active"]),
        reason=str(value["reason"]),
        by=str(value.get("by", "unknown")),
        at=str(value.get("at", "")),
    )


def read_enclave_file(path: Path) -> Enclave:
    """Read one Enclave YAML file; every failure is an :class:`InvalidEnclaveError`."""
    try:
        document = yaml.safe_load(path.read_text("utf-8"))
    except OSError as e:
        problem = Problem(field="(file)", message=f"cannot be read ({e.strerror})")
        raise InvalidEnclaveError(source=str(path), problems=[problem]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        problem = Problem(field="(file)", message=f"is not valid YAML ({type(e).__name__})")
        raise InvalidEnclaveError(source=str(path), problems=[problem]) from None
    return load_enclave(document, source=str(path))
