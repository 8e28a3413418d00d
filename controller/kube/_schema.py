"""The one source of the ``Enclave`` schema: the CRD and the local validator both read it.

``SPEC_SCHEMA`` is the structural OpenAPI v3 schema of ``spec``; ``RULES`` are the
cross-field checks, each written once as a CEL rule (for the API server's admission)
beside the Python predicate that means the same thing (for Enclave files checked
without a cluster). ``tests/integration/controller/test_crd.py`` sends every
malformed file in ``tests/assets/controller/invalid/`` to a real API server and to
:func:`validate_enclave` and requires both to refuse it naming the same field, so
the two halves of a rule cannot drift apart unnoticed.

The validator implements exactly the OpenAPI keywords used below (``type``,
``properties``, ``required``, ``enum``, ``pattern``, ``minLength``, ``maxLength``,
``minItems``, ``maxItems``, ``format: date-time``, ``x-kubernetes-list-type: set``);
it refuses unknown fields, where the API server would prune them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from policies import load_catalog

__all__ = [
    "BYTES_PATTERN",
    "CPU_PATTERN",
    "CRD_NAME",
    "GROUP",
    "KIND",
    "MAX_NAME_LENGTH",
    "PLURAL",
    "RULES",
    "SPEC_SCHEMA",
    "VERSION",
    "Problem",
    "Rule",
    "enclave_crd",
    "validate_enclave",
]

GROUP = "enclave.dev"
VERSION = "v1alpha1"
KIND = "Enclave"
PLURAL = "enclaves"
CRD_NAME = f"{PLURAL}.{GROUP}"

#: ``enclave-`` + the name must fit a namespace name (63 characters).
MAX_NAME_LENGTH = 63 - len("enclave-")

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: The portal's canonical usernames (``auth._names``: its character rule, lower-cased;
#: a test keeps the two equal). A member written in another case is refused rather than
#: folded silently, so the Enclave says exactly who the portal will admit.
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._@+-]{0,127}$"
_SEGMENT = r"[a-z0-9]([-a-z0-9._]*[a-z0-9])?"
#: Datasets mount under /data only: they can never shadow the home directory, /etc or /usr,
#: and no segment can be ``.`` or ``..`` (a segment starts and ends with a letter or digit).
MOUNT_PATH_PATTERN = rf"^/data(/{_SEGMENT})+$"
CPU_PATTERN = r"^([1-9][0-9]{0,2}|[0-9]{1,3}\.[0-9]{1,3}|[1-9][0-9]{0,5}m)$"
BYTES_PATTERN = r"^[1-9][0-9]{0,5}(Ki|Mi|Gi|Ti)?$"
_IMAGE = r"^[a-z0-9][a-z0-9._/:@-]{0,254}$"
_ROLES = ("researcher", "pi", "officer", "admin")
_PHASES = (
    "Pending",
    "Provisioning",
    "Ready",
    "Suspended",
    "Expired",
    "Quarantined",
    "Terminating",
    "Failed",
)


def _string(pattern: str | None = None, *, max_length: int = 253, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_length, **extra}
    if pattern is not None:
        out["pattern"] = pattern
    return out


def _tier_ids() -> tuple[str, ...]:
    return tuple(t.id for t in load_catalog())


def _tiers_requiring_networks() -> tuple[str, ...]:
    return tuple(t.id for t in load_catalog() if t.network.source_allowlist_required)


SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tier", "approval", "members", "workspace"],
    "properties": {
        "tier": {"type": "string", "enum": list(_tier_ids())},
        "displayName": _string(max_length=200),
        "approval": {
            "type": "object",
            "required": ["ethicsReviewId", "dataUseAgreementId", "notBefore", "notAfter"],
            "properties": {
                "ethicsReviewId": _string(r"^\S(.*\S)?$", max_length=128),
                "dataUseAgreementId": _string(r"^\S(.*\S)?$", max_length=128),
                "notBefore": {"type": "string", "format": "date-time"},
                "notAfter": {"type": "string", "format": "date-time"},
            },
        },
        "members": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {
                "type": "object",
                "required": ["user", "role"],
                "properties": {
                    "user": _string(USERNAME_PATTERN, max_length=128),
                    "role": {"type": "string", "enum": list(_ROLES)},
                },
            },
        },
        "datasets": {
            "type": "array",
            "maxItems": 32,
            "items": {
                "type": "object",
                "required": ["name", "persistentVolume", "mountPath"],
                "properties": {
                    "name": _string(_DNS_LABEL, max_length=40),
                    "persistentVolume": _string(_DNS_LABEL, max_length=63),
                    "mountPath": _string(MOUNT_PATH_PATTERN, max_length=200),
                },
            },
        },
        "workspace": {
            "type": "object",
            "required": ["image", "cpu", "memory", "storage"],
            "properties": {
                "image": _string(_IMAGE, max_length=255),
                "cpu": _string(CPU_PATTERN, max_length=10),
                "memory": _string(BYTES_PATTERN, max_length=10),
                "storage": _string(BYTES_PATTERN, max_length=10),
            },
        },
        "accessNetworks": {
            "type": "array",
            "maxItems": 64,
            "x-kubernetes-list-type": "set",
            "items": {"type": "string", "maxLength": 43},
        },
        # Set by ``enclave quarantine`` (or by hand): while ``active``, every allow
        # policy, the Ingress and the hub are removed. Lifting sets ``active: false``
        # with the lift's own reason; ``by`` and ``at`` say who and when.
        "quarantine": {
            "type": "object",
            "required": ["active", "reason"],
            "properties": {
                "active": {"type": "boolean"},
                "reason": _string(r"^\S(.*\S)?$", max_length=512),
                "by": _string(max_length=256),
                "at": {"type": "string", "format": "date-time"},
            },
        },
    },
}

_CONDITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "status", "lastTransitionTime", "reason", "message"],
    "properties": {
        "type": {"type": "string", "maxLength": 316},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "reason": {"type": "string", "maxLength": 1024},
        "message": {"type": "string", "maxLength": 32768},
    },
}

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "phase": {"type": "string", "enum": list(_PHASES)},
        "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        "hubURL": {"type": "string", "maxLength": 2048},
        "conditions": {
            "type": "array",
            "maxItems": 32,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": _CONDITION_SCHEMA,
        },
    },
}


# --- cross-field rules: CEL for admission, Python for files --------------------------


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One check, written once in CEL and once in Python, with one message.

    ``at`` is the schema location the rule is attached to (``()`` is the object's
    root, ``("spec", "approval")``, ``("spec", "accessNetworks", "[]")`` for each
    item); ``field`` the path the refusal names, relative to ``at``.
    """

    at: tuple[str, ...]
    cel: str
    message: str
    field: str = ""
    check: Callable[[Any], bool]


def _cidr_ok(value: str) -> bool:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return "/" in value and net.prefixlen > 0


def _members_unique(members: Sequence[Mapping[str, Any]]) -> bool:
    users = [str(m.get("user", "")).lower() for m in members]
    return len(users) == len(set(users))


def _unique(items: Sequence[Mapping[str, Any]], key: str) -> bool:
    values = [i.get(key) for i in items]
    return len(values) == len(set(values))


def _paths_apart(datasets: Sequence[Mapping[str, Any]]) -> bool:
    for a in datasets:
        for b in datasets:
            if a is b:
                continue
            pa, pb = str(a.get("mountPath", "")), str(b.get("mountPath", ""))
            if pa == pb or pb.startswith(pa + "/"):
                return False
    return True


def _after(approval: Mapping[str, Any]) -> bool:
    try:
        return _timestamp(approval["notAfter"]) > _timestamp(approval["notBefore"])
    except (KeyError, ValueError):
        return True  # a missing or malformed time is reported by the schema


def _networks_given(required_by: tuple[str, ...]) -> Callable[[Any], bool]:
    def check(spec: Mapping[str, Any]) -> bool:
        return spec.get("tier") not in required_by or bool(spec.get("accessNetworks"))

    return check


def _rules() -> tuple[Rule, ...]:
    requiring = _tiers_requiring_networks()
    quoted = ", ".join(f"'{t}'" for t in requiring)
    return (
        Rule(
            at=(),
            cel=(
                f"size(self.metadata.name) <= {MAX_NAME_LENGTH} && "
                f"self.metadata.name.matches('{_DNS_LABEL}')"
            ),
            message=(
                f"metadata.name must be a DNS-1123 label of at most {MAX_NAME_LENGTH} "
                "characters (the namespace is enclave-<name>)"
            ),
            check=lambda obj: (
                len(str(obj.get("metadata", {}).get("name", ""))) <= MAX_NAME_LENGTH
                and re.match(_DNS_LABEL, str(obj.get("metadata", {}).get("name", ""))) is not None
            ),
        ),
        Rule(
            at=("spec",),
            cel=(
                f"!(self.tier in [{quoted}]) || "
                "(has(self.accessNetworks) && size(self.accessNetworks) > 0)"
            ),
            field=".accessNetworks",
            message=(
                "accessNetworks is required by this tier: list the client networks "
                "(access terminals, remote security areas) allowed to enter"
            ),
            check=_networks_given(requiring),
        ),
        Rule(
            at=("spec", "approval"),
            cel="self.notAfter > self.notBefore",
            field=".notAfter",
            message="notAfter must be later than notBefore",
            check=_after,
        ),
        Rule(
            at=("spec", "members"),
            cel=(
                "self.all(m, self.filter(n, n.user.lowerAscii() == m.user.lowerAscii())"
                ".size() == 1)"
            ),
            message="each member's user must appear once (compared case-insensitively)",
            check=_members_unique,
        ),
        Rule(
            at=("spec", "datasets"),
            cel="self.all(a, self.exists_one(b, b.name == a.name))",
            message="dataset names must be unique",
            check=lambda ds: _unique(ds, "name"),
        ),
        Rule(
            at=("spec", "datasets"),
            cel=(
                "self.all(a, self.exists_one(b, b.mountPath == a.mountPath)) && "
                "self.all(a, self.all(b, !b.mountPath.startsWith(a.mountPath + '/')))"
            ),
            message="dataset mount paths must differ and none may lie inside another",
            check=_paths_apart,
        ),
        Rule(
            at=("spec", "accessNetworks", "[]"),
            cel=(
                "isCIDR(self) && cidr(self) == cidr(self).masked() && cidr(self).prefixLength() > 0"
            ),
            message=(
                "must be a network in CIDR notation with no host bits set and a prefix "
                "longer than /0, e.g. 192.0.2.0/24"
            ),
            check=_cidr_ok,
        ),
    )


RULES: tuple[Rule, ...] = _rules()


# --- the CRD ------------------------------------------------------------------------


def _with_rules(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """A deep copy of ``schema`` with the rules attached at ``path`` and below."""
    out = dict(schema)
    mine = [r for r in RULES if r.at == path]
    if mine:
        out["x-kubernetes-validations"] = [
            {"rule": r.cel, "message": r.message, **({"fieldPath": r.field} if r.field else {})}
            for r in mine
        ]
    if "properties" in schema:
        out["properties"] = {k: _with_rules(v, (*path, k)) for k, v in schema["properties"].items()}
    if "items" in schema:
        out["items"] = _with_rules(schema["items"], (*path, "[]"))
    return out


def enclave_crd() -> dict[str, Any]:
    """The ``CustomResourceDefinition`` for ``enclaves.enclave.dev``, generated from the schema."""
    root: dict[str, Any] = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": SPEC_SCHEMA,
            "status": STATUS_SCHEMA,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "plural": PLURAL,
                "singular": "enclave",
                "kind": KIND,
                "listKind": f"{KIND}List",
                "shortNames": ["enc"],
                "categories": ["enclave"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Tier", "type": "string", "jsonPath": ".spec.tier"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Expires",
                            "type": "date",
                            "jsonPath": ".spec.approval.notAfter",
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": _with_rules(root, ())},
                }
            ],
        },
    }


# --- the local validator -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing wrong with an Enclave document: the field (as the API server names it) and why."""

    field: str
    message: str


_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _structure(schema: Mapping[str, Any], value: Any, path: str) -> list[Problem]:
    kind = schema["type"]
    if not _TYPES[kind](value):
        return [Problem(field=path, message=f"must be of type {kind}")]
    problems: list[Problem] = []
    if kind == "object":
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(Problem(field=_join(path, key), message="is required"))
        for key, item in value.items():
            if key not in props:
                problems.append(
                    Problem(field=_join(path, str(key)), message="is not a known field")
                )
            else:
                problems += _structure(props[key], item, _join(path, key))
    elif kind == "array":
        if len(value) < schema.get("minItems", 0):
            problems.append(Problem(field=path, message="must not be empty"))
        if len(value) > schema.get("maxItems", len(value)):
            problems.append(
                Problem(field=path, message=f"has more than {schema['maxItems']} items")
            )
        if schema.get("x-kubernetes-list-type") == "set":
            for i, item in enumerate(value):
                if item in value[:i]:
                    problems.append(Problem(field=f"{path}[{i}]", message="lists a value twice"))
        for i, item in enumerate(value):
            problems += _structure(schema["items"], item, f"{path}[{i}]")
    elif kind == "string":
        if "enum" in schema and value not in schema["enum"]:
            allowed = ", ".join(schema["enum"])
            problems.append(Problem(field=path, message=f"must be one of {allowed}"))
        if len(value) < schema.get("minLength", 0):
            problems.append(Problem(field=path, message="must not be empty"))
        if len(value) > schema.get("maxLength", len(value)):
            problems.append(
                Problem(field=path, message=f"must be at most {schema['maxLength']} characters")
            )
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            problems.append(Problem(field=path, message=f"must match {schema['pattern']}"))
        if schema.get("format") == "date-time":
            try:
                _timestamp(value)
            except ValueError:
                problems.append(
                    Problem(
                        field=path, message="must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z"
                    )
                )
    return problems


def _values_at(document: Any, at: tuple[str, ...], path: str) -> list[tuple[str, Any]]:
    """Every value at schema location ``at`` in ``document``, with its field path."""
    if not at:
        return [(path, document)]
    head, rest = at[0], at[1:]
    if head == "[]":
        if not isinstance(document, list):
            return []
        out: list[tuple[str, Any]] = []
        for i, item in enumerate(document):
            out += _values_at(item, rest, f"{path}[{i}]")
        return out
    if not isinstance(document, Mapping) or head not in document:
        return []
    return _values_at(document[head], rest, _join(path, head))


def validate_enclave(document: Any) -> tuple[Problem, ...]:
    """Every problem in an ``Enclave`` document, checked as admission would (empty: valid).

    1. ``apiVersion`` and ``kind`` must name this resource.
    2. ``spec`` must match :data:`SPEC_SCHEMA` (types, required fields, enums,
       patterns, lengths); unknown fields are refused.
    3. Only when the structure holds, every rule in :data:`RULES` runs on the
       values it is attached to (as the API server runs CEL only on a well-typed object).
    """
    if not isinstance(document, Mapping):
        return (Problem(field="(document)", message="must be a mapping (an Enclave resource)"),)
    problems: list[Problem] = []
    if document.get("apiVersion") != f"{GROUP}/{VERSION}":
        problems.append(Problem(field="apiVersion", message=f"must be {GROUP}/{VERSION}"))
    if document.get("kind") != KIND:
        problems.append(Problem(field="kind", message=f"must be {KIND}"))
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str):
        problems.append(Problem(field="metadata.name", message="is required"))
    for key in document:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            problems.append(Problem(field=str(key), message="is not a known field"))
    if "spec" not in document:
        problems.append(Problem(field="spec", message="is required"))
    else:
        problems += _structure(SPEC_SCHEMA, document["spec"], "spec")
    if problems:
        return tuple(problems)
    for rule in RULES:
        for path, value in _values_at(document, rule.at, ""):
            if not rule.check(value):
                field = _join(path, rule.field.lstrip(".")) if rule.field else path
                problems.append(Problem(field=field or "metadata.name", message=rule.message))
    return tuple(problems)
