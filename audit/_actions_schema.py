"""The building blocks of the action registry: the detail-field and action types, the
event sources, and the shorthands the area modules (``audit/_actions_*.py``) write their
entries with. Imported only by those modules and :mod:`audit._actions`."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "ACTION_SOURCES",
    "AUDIT",
    "CATEGORY_FIELD",
    "CLI",
    "CONTROLLER",
    "FACTOR_KINDS",
    "HUB",
    "PORTAL",
    "WORKSPACE",
    "ActionSpec",
    "DetailField",
    "DetailType",
    "RawSpec",
    "field",
]

ACTION_SOURCES: frozenset[str] = frozenset(
    {"portal", "hub", "workspace", "controller", "audit", "cli"}
)
"""Every event source (DESIGN.md "Audit"); ``ActionSpec.sources`` is a subset."""

DetailType = Literal["str", "int", "bool", "str_list"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DetailField:
    """One allowed key of ``details``: its JSON type, whether required, its bounds."""

    type: DetailType
    required: bool = False
    max_len: int = 1024
    choices: tuple[str, ...] = ()
    doc: str = ""
    #: a multi-line text (code a researcher ran): line feeds and tabs are allowed in it;
    #: every other invisible or bidirectional character is still refused at intake
    multiline: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionSpec:
    """A registered action: name, schema version, detail fields and known blind spots."""

    name: str
    version: int
    summary: str
    cannot_capture: str
    fields: MappingProxyType[str, DetailField]
    #: the sources that may send this action; intake refuses it from any other
    sources: frozenset[str]
    ocsf_class: int | None = None

    def allows(self, source: str) -> bool:
        """True when ``source`` is entitled to send this action."""
        return source in self.sources


def field(
    type_: DetailType,
    *,
    required: bool = False,
    max_len: int = 1024,
    choices: tuple[str, ...] = (),
    doc: str = "",
    multiline: bool = False,
) -> DetailField:
    """A detail field of ``type_``: the shorthand the area modules write entries with."""
    return DetailField(
        type=type_,
        required=required,
        max_len=max_len,
        choices=choices,
        doc=doc,
        multiline=multiline,
    )


#: one registry entry as an area module writes it; :mod:`audit._actions` checks and builds it
RawSpec = dict[str, object]

FACTOR_KINDS = ("password", "totp", "webauthn", "recovery_code", "oidc")
CATEGORY_FIELD = field(
    "str",
    choices=("knowledge", "possession", "biometric"),
    doc="factor category as in the enclave_factors claim (policies.FactorCategory)",
)

# Who sends what (combine with +, e.g. PORTAL + AUDIT). The audit service writes its
# own events (audit.*, and the officer sign-ins it handles) through the log, never
# through intake: no intake token can be issued for source "audit".
PORTAL = ("portal",)
HUB = ("hub",)
WORKSPACE = ("workspace",)
CONTROLLER = ("controller",)
AUDIT = ("audit",)
CLI = ("cli",)
