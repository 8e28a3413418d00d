"""Loading the tier catalog and applying an operator's overlay.

The built-in catalog is four YAML files shipped in ``policies/catalog``. An
operator overlay may only *tighten* controls; a loosening is refused unless it
is declared under ``unsafeExceptions`` with a reason, in which case it is applied,
logged as a warning whenever the catalog is loaded, and shown in ``tiers show``.
A setting another setting depends on (``_model.DEPENDENCIES``, e.g. the audit intake
that file events travel through) cannot be switched off at all while the dependent
one is on: not by a tightening, not by an unsafe exception, not by a catalog file.

Overlay file format::

    apiVersion: enclave.dev/v1alpha1
    kind: TierOverlay
    tiers:                       # tightening only
      nbdc-standard:
        session: {idle_timeout_s: 600}
    unsafeExceptions:            # loosening, each with a reason
      - tier: nbdc-high
        control: terminals.enabled
        value: true
        reason: Review board decision 2026-10-01 for the pilot.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import structlog
import yaml
from pydantic import ValidationError

from ._control import Stricter, strictness_of
from ._groups import CONTROL_GROUPS
from ._model import Tier, UnsafeException, broken_dependency
from .errors import CatalogError, UnknownTierError

__all__ = ["TIER_IDS", "Catalog", "load_catalog"]

#: The tiers every catalog defines, in display order.
TIER_IDS: tuple[str, ...] = ("nbdc-standard", "nbdc-high", "tommo-standard", "tommo-strong")

_log = structlog.get_logger("enclave.policies")


@dataclass(frozen=True)
class Catalog:
    """The tiers in force: built-in defaults with the operator's overlay applied."""

    tiers: Mapping[str, Tier]
    overlay: str | None = None
    unsafe: tuple[tuple[str, UnsafeException], ...] = field(default=())

    def get(self, tier_id: str) -> Tier:
        try:
            return self.tiers[tier_id]
        except KeyError:
            raise UnknownTierError(tier_id, tuple(self.tiers)) from None

    def __iter__(self) -> Iterator[Tier]:
        return iter(self.tiers.values())

    def __len__(self) -> int:
        return len(self.tiers)


def load_catalog(
    *, overlay: Path | str | None = None, catalog_dir: Path | str | None = None
) -> Catalog:
    """Load the four tiers, then apply ``overlay`` if given.

    ``catalog_dir`` replaces the built-in files (for development and tests); it is
    held to the same rule as an overlay: no control may be looser than the
    built-in default. Raises :class:`CatalogError` naming the file, key path and
    problem; nothing is half-applied.
    """
    builtin = _load_dir(None)
    tiers = builtin
    if catalog_dir is not None:
        tiers = _load_dir(Path(catalog_dir))
        for tier_id, tier in tiers.items():
            _refuse_loosening(
                file=str(Path(catalog_dir) / f"{tier_id}.yaml"),
                prefix="",
                base=builtin[tier_id],
                new=tier,
            )
    unsafe: tuple[tuple[str, UnsafeException], ...] = ()
    overlay_name = None
    if overlay is not None:
        overlay_name = str(overlay)
        tiers, unsafe = _apply_overlay(Path(overlay), tiers)
        for tier_id, exc in unsafe:
            _log.warning(
                "unsafe tier exception in force",
                tier=tier_id,
                control=exc.control,
                value=exc.value,
                baseline=exc.baseline,
                reason=exc.reason,
                overlay=overlay_name,
            )
    return Catalog(tiers=tiers, overlay=overlay_name, unsafe=unsafe)


# --- reading files ---------------------------------------------------------------------


def _read_yaml(path: Path | None, name: str) -> Any:
    try:
        if path is None:
            text = resources.files("policies").joinpath("catalog", name).read_text("utf-8")
        else:
            text = path.read_text("utf-8")
    except FileNotFoundError:
        raise CatalogError(file=str(path or name), path="", problem="file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogError(file=str(path or name), path="", problem=f"cannot read: {e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise CatalogError(
            file=str(path or name), path="", problem=f"is not valid YAML{where}: {problem}"
        ) from None


def _load_dir(directory: Path | None) -> dict[str, Tier]:
    tiers: dict[str, Tier] = {}
    for tier_id in TIER_IDS:
        name = f"{tier_id}.yaml"
        path = directory / name if directory is not None else None
        label = str(path) if path is not None else f"policies/catalog/{name}"
        data = _read_yaml(path, name)
        if not isinstance(data, dict):
            raise CatalogError(file=label, path="", problem="must be a mapping of keys to values")
        if data.get("id") != tier_id:
            raise CatalogError(
                file=label, path="id", problem=f"must be {tier_id!r} (the file's name)"
            )
        tiers[tier_id] = _validate_tier(label, "", data)
        _refuse_broken_dependency(file=label, path=None, prefix="", tier=tiers[tier_id])
    if directory is not None:
        extra = sorted(p.stem for p in directory.glob("*.yaml") if p.stem not in TIER_IDS)
        if extra:
            raise CatalogError(
                file=str(directory / f"{extra[0]}.yaml"),
                path="id",
                problem=f"unknown tier {extra[0]!r}; known tiers: {', '.join(TIER_IDS)}",
            )
    return tiers


def _validate_tier(file: str, prefix: str, data: Mapping[str, Any]) -> Tier:
    try:
        return Tier.model_validate(data)
    except ValidationError as e:
        raise _as_catalog_error(file, prefix, e) from None


def _refuse_broken_dependency(*, file: str, path: str | None, prefix: str, tier: Tier) -> None:
    """Refuse ``tier`` if it switches off a setting another one depends on.

    The error's key path is ``path`` when given, else the switched-off setting under
    ``prefix``; the problem names both settings.
    """
    dep = broken_dependency(tier)
    if dep is None:
        return
    raise CatalogError(
        file=file,
        path=path if path is not None else ".".join(p for p in [prefix, dep.needs] if p),
        problem=f"{dep.needs} cannot be switched off: {dep.setting} depends on it ({dep.why})",
    )


def _as_catalog_error(file: str, prefix: str, e: ValidationError) -> CatalogError:
    err = e.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    kind = err["type"]
    if kind == "extra_forbidden":
        problem = "unknown key"
    elif kind == "missing":
        problem = "missing key"
    elif kind == "value_error":
        problem = str(err.get("ctx", {}).get("error", err["msg"]))
    else:
        value = err.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
        problem = f"{err['msg'][0].lower()}{err['msg'][1:]}{shown}"
    path = ".".join(p for p in [prefix, *loc] if p)
    return CatalogError(file=file, path=path, problem=problem)


# --- overlays ----------------------------------------------------------------------------


def _looser(direction: Stricter, base: Any, new: Any) -> bool:
    if direction is Stricter.TRUE:
        return bool(base) and not new
    if direction is Stricter.FALSE:
        return not base and bool(new)
    if direction is Stricter.HIGHER:
        return bool(new < base)
    if direction is Stricter.LOWER:
        return bool(new > base)
    assert isinstance(base, enum.Enum)
    assert isinstance(new, enum.Enum)
    order = list(type(base))
    return order.index(new) < order.index(base)


def _describe(direction: Stricter, base: Any) -> str:
    shown = base.value if isinstance(base, enum.Enum) else base
    if direction is Stricter.TRUE:
        return "the tier requires it to be true"
    if direction is Stricter.FALSE:
        return "the tier requires it to be false"
    if direction is Stricter.HIGHER:
        return f"the tier requires at least {shown}"
    if direction is Stricter.LOWER:
        return f"the tier allows at most {shown}"
    return f"the tier requires {shown!r} or stricter"


def _settings_diff(base: Tier, new: Tier) -> Iterator[tuple[str, str, Stricter, Any, Any]]:
    for group, control in new.controls():
        base_control = base.control(group)
        for name, value, direction, _ in control.settings():
            old = getattr(base_control, name)
            if old != value:
                yield group, name, direction, old, value


def _refuse_loosening(*, file: str, prefix: str, base: Tier, new: Tier) -> None:
    for group, name, direction, old, value in _settings_diff(base, new):
        if _looser(direction, old, value):
            shown = value.value if isinstance(value, enum.Enum) else value
            path = ".".join(p for p in [prefix, group, name] if p)
            raise CatalogError(
                file=file,
                path=path,
                problem=f"{shown!r} would loosen the control ({_describe(direction, old)}); "
                "declare it under unsafeExceptions with a reason to allow it",
            )


_OVERLAY_KEYS = {"apiVersion", "kind", "tiers", "unsafeExceptions"}
_EXCEPTION_KEYS = {"tier", "control", "value", "reason"}


def _apply_overlay(
    path: Path, tiers: dict[str, Tier]
) -> tuple[dict[str, Tier], tuple[tuple[str, UnsafeException], ...]]:
    file = str(path)
    data = _read_yaml(path, path.name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CatalogError(file=file, path="", problem="must be a mapping of keys to values")
    for key in data:
        if key not in _OVERLAY_KEYS:
            raise CatalogError(file=file, path=str(key), problem="unknown key")
    if data.get("apiVersion", "enclave.dev/v1alpha1") != "enclave.dev/v1alpha1":
        raise CatalogError(file=file, path="apiVersion", problem="must be enclave.dev/v1alpha1")
    if data.get("kind", "TierOverlay") != "TierOverlay":
        raise CatalogError(file=file, path="kind", problem="must be TierOverlay")

    raw: dict[str, dict[str, Any]] = {
        tid: t.model_dump(by_alias=True, exclude={"unsafe_exceptions"}, mode="json")
        for tid, t in tiers.items()
    }

    # 1. Tightening: merge, validate the whole tier, refuse a broken dependency, then
    #    refuse any loosening.
    tightened = _mapping(file, "tiers", data.get("tiers", {}))
    touched: set[str] = set()
    for tier_id, groups in tightened.items():
        if tier_id not in raw:
            raise CatalogError(
                file=file,
                path=f"tiers.{tier_id}",
                problem=f"unknown tier; known tiers: {', '.join(TIER_IDS)}",
            )
        for group, settings in _mapping(file, f"tiers.{tier_id}", groups).items():
            _merge_setting_group(file, f"tiers.{tier_id}", raw[tier_id], group, settings)
        touched.add(tier_id)
    result = dict(tiers)
    for tier_id in touched:
        merged = _validate_tier(file, f"tiers.{tier_id}", raw[tier_id])
        _refuse_broken_dependency(file=file, path=None, prefix=f"tiers.{tier_id}", tier=merged)
        _refuse_loosening(file=file, prefix=f"tiers.{tier_id}", base=tiers[tier_id], new=merged)
        result[tier_id] = merged

    # 2. Unsafe exceptions: each must really loosen, must say why, and may not switch
    #    off a setting another one depends on.
    declared = data.get("unsafeExceptions", [])
    if not isinstance(declared, list):
        raise CatalogError(file=file, path="unsafeExceptions", problem="must be a list")
    unsafe: list[tuple[str, UnsafeException]] = []
    for i, entry in enumerate(declared):
        where = f"unsafeExceptions[{i}]"
        entry = _mapping(file, where, entry)
        for key in entry:
            if key not in _EXCEPTION_KEYS:
                raise CatalogError(file=file, path=f"{where}.{key}", problem="unknown key")
        for key in sorted(_EXCEPTION_KEYS):
            if key not in entry:
                raise CatalogError(file=file, path=f"{where}.{key}", problem="missing key")
        tier_id, control, reason = entry["tier"], entry["control"], entry["reason"]
        if tier_id not in result:
            raise CatalogError(
                file=file,
                path=f"{where}.tier",
                problem=f"unknown tier {tier_id!r}; known tiers: {', '.join(TIER_IDS)}",
            )
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            raise CatalogError(
                file=file, path=f"{where}.reason", problem="must say why, in at least 10 characters"
            )
        if not isinstance(control, str) or control.count(".") != 1:
            raise CatalogError(
                file=file,
                path=f"{where}.control",
                problem="must be GROUP.SETTING, e.g. terminals.enabled",
            )
        group, name = control.split(".")
        before = result[tier_id]
        candidate = before.model_dump(by_alias=True, exclude={"unsafe_exceptions"}, mode="json")
        _merge_setting_group(file, f"{where}.control", candidate, group, {name: entry["value"]})
        after = _validate_tier(file, f"{where}.value", candidate)
        _refuse_broken_dependency(file=file, path=f"{where}.control", prefix="", tier=after)
        old, new = getattr(before.control(group), name), getattr(after.control(group), name)
        direction = strictness_of(type(before.control(group)), name)
        assert direction is not None
        if not _looser(direction, old, new):
            raise CatalogError(
                file=file,
                path=f"{where}.value",
                problem="does not loosen the control; put it under tiers instead",
            )
        exc = UnsafeException(
            control=control,
            value=new.value if isinstance(new, enum.Enum) else new,
            baseline=old.value if isinstance(old, enum.Enum) else old,
            reason=reason.strip(),
        )
        result[tier_id] = after.model_copy(
            update={"unsafe_exceptions": (*before.unsafe_exceptions, exc)}
        )
        unsafe.append((tier_id, exc))
    return result, tuple(unsafe)


def _mapping(file: str, path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CatalogError(file=file, path=path, problem="must be a mapping of keys to values")
    return value


def _merge_setting_group(
    file: str, prefix: str, tier: dict[str, Any], group: str, settings: Any
) -> None:
    if group not in CONTROL_GROUPS:
        raise CatalogError(
            file=file,
            path=f"{prefix}.{group}",
            problem=f"unknown control group; known groups: {', '.join(CONTROL_GROUPS)}",
        )
    settings = _mapping(file, f"{prefix}.{group}", settings)
    model = CONTROL_GROUPS[group]
    for name, value in settings.items():
        if strictness_of(model, name) is None:
            problem = "is not a tunable setting" if name in model.model_fields else "unknown key"
            raise CatalogError(file=file, path=f"{prefix}.{group}.{name}", problem=problem)
        tier[group][name] = value
