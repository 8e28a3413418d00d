"""What a control group is, and which way each of its settings is stricter.

Every control group is a frozen model whose constructor rejects anything
malformed (wrong type, unknown key, missing citation, a citation of a clause its
source does not have). Every tunable field says which direction is *stricter*, so
that an operator overlay can be checked mechanically: tightening is accepted,
loosening is refused unless it is declared as an unsafe exception. The groups
themselves are in ``_groups.py``; the tier that holds them in ``_model.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._sources import parse_citation

__all__ = ["Control", "FalseIsStricter", "Stricter", "TrueIsStricter", "strictness_of"]


class Stricter(enum.Enum):
    """Which way a value moves when a control gets stricter."""

    TRUE = "true is stricter"
    FALSE = "false is stricter"
    HIGHER = "a higher value is stricter"
    LOWER = "a lower value is stricter"
    ORDERED = "later in the enum's order is stricter"


#: A yes/no setting where ``true`` is the stricter value (a requirement).
TrueIsStricter = Annotated[bool, Stricter.TRUE]
#: A yes/no setting where ``false`` is the stricter value (a permission).
FalseIsStricter = Annotated[bool, Stricter.FALSE]


class Control(BaseModel):
    """One group of settings with the guideline clauses that demand them."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: Human title of the group, for tables and docs.
    title: ClassVar[str] = ""

    sources: tuple[str, ...] = Field(
        min_length=1,
        description="Guideline clauses behind this control (policies/_sources.py checks them).",
    )
    note: str = Field(
        default="",
        max_length=600,
        description="Plain-language statement of what the control means in practice.",
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _sources_from_list(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("sources")
    @classmethod
    def _known_clauses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for citation in value:
            parse_citation(citation)  # refuses an unknown source or a clause it lacks
        return value

    def settings(self) -> Iterator[tuple[str, Any, Stricter, str]]:
        """Yield (field, value, direction, description) for each tunable setting."""
        for name, info in type(self).model_fields.items():
            direction = strictness_of(type(self), name)
            if direction is None:
                continue
            yield name, getattr(self, name), direction, info.description or name


def strictness_of(model: type[BaseModel], field: str) -> Stricter | None:
    info = model.model_fields.get(field)
    if info is None:
        return None
    for meta in info.metadata:
        if isinstance(meta, Stricter):
            return meta
    return None
