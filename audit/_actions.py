"""The registry of audit action names and the versioned schema of each one's details.

An action name is dotted lower-case (``auth.factor.verified``). Each registered action
has a schema version, an OCSF class where one fits, the fields its ``details`` may
carry, and a sentence saying what the event *cannot* capture, so that an officer
reading the log knows where its evidence ends.

Versioning rule: a new schema version may only add optional detail fields. Removing,
renaming or retyping a field needs a new action name. So every entry valid under an
older version stays valid, and the version recorded in each leaf (``schema``) says
which fields the sender knew about.

Each action also names the ``sources`` allowed to send it (DESIGN.md "Audit": portal,
hub, workspace, controller, audit, cli). The service's intake refuses an action from any
other source (403 ``action_not_allowed``), and the officer UI's charts count an action
only from those sources. Registering an action means writing its entry in the area's
module (``audit/_actions_core.py``, ``audit/_actions_portal.py`` or
``audit/_actions_workspace.py``, in :mod:`audit._actions_schema`'s terms), with a
``"sources"`` line naming who really sends it, e.g. ``"sources": WORKSPACE,``.
"""

from __future__ import annotations

from types import MappingProxyType

from ._actions_core import CORE_SPECS
from ._actions_portal import PORTAL_SPECS
from ._actions_schema import ACTION_SOURCES, ActionSpec, DetailField, RawSpec
from ._actions_workspace import WORKSPACE_SPECS

__all__ = ["ACTIONS", "ACTION_SOURCES", "ActionSpec", "DetailField", "action_spec"]

_SPECS: list[RawSpec] = [*CORE_SPECS, *PORTAL_SPECS, *WORKSPACE_SPECS]


def _build() -> MappingProxyType[str, ActionSpec]:
    out: dict[str, ActionSpec] = {}
    for raw in _SPECS:
        name = str(raw["name"])
        fields = raw["fields"]
        assert isinstance(fields, dict)
        ocsf = raw.get("ocsf")
        sources = raw["sources"]  # required: an action names who may send it
        if not isinstance(sources, tuple) or not sources or not set(sources) <= ACTION_SOURCES:
            raise ValueError(f"action {name}: sources must name some of {sorted(ACTION_SOURCES)}")
        out[name] = ActionSpec(
            name=name,
            version=int(raw.get("version", 1)),  # type: ignore[call-overload]
            summary=str(raw["summary"]),
            cannot_capture=str(raw["cannot_capture"]),
            fields=MappingProxyType(dict(fields)),
            sources=frozenset(sources),
            ocsf_class=int(ocsf) if isinstance(ocsf, int) else None,
        )
    return MappingProxyType(out)


ACTIONS: MappingProxyType[str, ActionSpec] = _build()
"""Every registered action, by name."""


def action_spec(name: str) -> ActionSpec | None:
    """The registered spec for ``name``, or ``None`` when it is not registered."""
    return ACTIONS.get(name)
