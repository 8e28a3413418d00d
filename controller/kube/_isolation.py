"""What each pod class of an enclave can reach, computed from NetworkPolicies alone.

A pure function: it takes the namespace's NetworkPolicies as the API returns them
(camelCase mappings, e.g. ``kubectl get networkpolicy -o json``'s ``items``), the
namespace's labels and the enclave's pod classes, and applies the NetworkPolicy
semantics of ``networking.k8s.io/v1``:

1. A pod is isolated for a direction when at least one policy selects it
   (``spec.podSelector``) and lists that direction in ``policyTypes`` (defaulted as
   the API server does: ``Ingress`` always, ``Egress`` when ``egress`` rules exist).
   A pod no policy isolates is reachable from, and reaches, anywhere.
2. What an isolated pod may do is the union of the rules of every policy selecting
   it; policies never subtract (so a policy added by someone else can only widen).
3. A rule without peers (``to``/``from`` missing or empty) matches every peer; a
   rule without ``ports`` matches every port.
4. A peer is an ``ipBlock`` (``cidr`` minus ``except``), or pods chosen by
   ``podSelector`` in the policy's namespace, or in the namespaces its
   ``namespaceSelector`` matches (``{}`` = every namespace).
5. A named port means the port of that name on the destination pod; it is resolved
   against the enclave's own pod classes, and stays named for other pods.
6. A connection between two pods of the namespace needs both the sender's egress
   and the receiver's ingress to allow it (``paths``).

It cannot see what the cluster's CNI enforces: NetworkPolicies only bind where the
CNI implements them, which the report says rather than assumes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALL_PORTS",
    "ANYWHERE",
    "ClassReach",
    "Grant",
    "IsolationReport",
    "Path",
    "Peer",
    "PodClass",
    "PortRange",
    "analyse_policies",
]

_PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True, kw_only=True)
class PodClass:
    """A kind of pod in the namespace: its labels and its named container ports."""

    name: str
    labels: Mapping[str, str]
    #: (port name, protocol, number) of each named container port.
    ports: tuple[tuple[str, str, int], ...] = ()

    def __hash__(self) -> int:
        return hash(self.name)


@dataclass(frozen=True, kw_only=True, order=True)
class PortRange:
    """``protocol`` ports ``first``..``last``; ``named`` when it could not be resolved."""

    protocol: str
    first: int = 1
    last: int = 65535
    named: str | None = None

    def __str__(self) -> str:
        if self.named is not None:
            return f"{self.protocol}/{self.named}"
        if (self.first, self.last) == (1, 65535):
            return f"{self.protocol}/any"
        if self.first == self.last:
            return f"{self.protocol}/{self.first}"
        return f"{self.protocol}/{self.first}-{self.last}"


#: Every port of every protocol.
ALL_PORTS: tuple[PortRange, ...] = tuple(PortRange(protocol=p) for p in _PROTOCOLS)


@dataclass(frozen=True, kw_only=True, order=True)
class Peer:
    """Who is on the other side of a grant, in words an officer can check.

    ``kind`` is ``anywhere`` (every address), ``network`` (``cidr`` minus ``excepts``)
    or ``pods`` (``pods`` in ``namespaces``); ``classes`` names the enclave's own pod
    classes the peer covers.
    """

    kind: str
    namespaces: str = ""
    pods: str = ""
    cidr: str = ""
    excepts: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind == "anywhere":
            return "anywhere (every address and pod)"
        if self.kind == "network":
            ex = f" except {', '.join(self.excepts)}" if self.excepts else ""
            return f"network {self.cidr}{ex}"
        covered = f" [{', '.join(self.classes)}]" if self.classes else ""
        return f"pods {self.pods} in {self.namespaces}{covered}"


#: The peer of a rule without peers.
ANYWHERE = Peer(kind="anywhere")


@dataclass(frozen=True, kw_only=True, order=True)
class Grant:
    """One peer and the ports a policy opens towards (egress) or from (ingress) it."""

    peer: Peer
    ports: tuple[PortRange, ...]
    policy: str

    def __str__(self) -> str:
        return f"{self.peer} on {', '.join(map(str, self.ports))} (policy {self.policy})"


@dataclass(frozen=True, kw_only=True)
class ClassReach:
    """One pod class: whether each direction is isolated, and what is granted."""

    pod_class: str
    egress_isolated: bool
    egress: tuple[Grant, ...]
    ingress_isolated: bool
    ingress: tuple[Grant, ...]


@dataclass(frozen=True, kw_only=True, order=True)
class Path:
    """A connection the policies allow between two pod classes of the namespace."""

    source: str
    destination: str
    ports: tuple[PortRange, ...]


@dataclass(frozen=True, kw_only=True)
class IsolationReport:
    namespace: str
    classes: tuple[ClassReach, ...]
    paths: tuple[Path, ...]
    policies: tuple[str, ...]

    def of(self, pod_class: str) -> ClassReach:
        for reach in self.classes:
            if reach.pod_class == pod_class:
                return reach
        raise KeyError(pod_class)

    def reaches_address(
        self, pod_class: str, address: str, *, port: int, protocol: str = "TCP"
    ) -> bool:
        """Whether ``pod_class`` may send to an address outside the cluster's pods."""
        reach = self.of(pod_class)
        if not reach.egress_isolated:
            return True
        ip = ipaddress.ip_address(address)
        for grant in reach.egress:
            if not _port_allows(grant.ports, protocol, port):
                continue
            if grant.peer.kind == "anywhere":
                return True
            if grant.peer.kind == "network" and _in_block(ip, grant.peer):
                return True
        return False

    def canonical(self) -> frozenset[tuple[str, ...]]:
        """What the policies allow, without policy names: equal reports allow the same."""
        out: set[tuple[str, ...]] = set()
        for reach in self.classes:
            for direction, isolated, grants in (
                ("egress", reach.egress_isolated, reach.egress),
                ("ingress", reach.ingress_isolated, reach.ingress),
            ):
                if not isolated:
                    out.add((reach.pod_class, direction, "not isolated"))
                for g in grants:
                    for p in g.ports:
                        out.add((reach.pod_class, direction, str(g.peer), str(p)))
        for path in self.paths:
            for p in path.ports:
                out.add((path.source, "path", path.destination, str(p)))
        return frozenset(out)

    def differences(self, expected: IsolationReport) -> tuple[str, ...]:
        """Lines saying what this report allows beyond, or lacks from, ``expected``."""
        mine, theirs = self.canonical(), expected.canonical()
        extra = [f"allows {_line(t)}" for t in sorted(mine - theirs)]
        missing = [f"lacks {_line(t)}" for t in sorted(theirs - mine)]
        return tuple(extra + missing)


def _line(item: tuple[str, ...]) -> str:
    if len(item) == 3:
        return f"{item[0]} {item[1]}: {item[2]}"
    if item[1] == "path":
        return f"path {item[0]} -> {item[2]} on {item[3]}"
    return f"{item[0]} {item[1]} {item[2]} on {item[3]}"


# --- selectors -------------------------------------------------------------------------


def _matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """LabelSelector semantics; ``{}`` matches everything."""
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False  # an operator we do not know matches nothing we can prove
    return True


def _describe(selector: Mapping[str, Any] | None, *, every: str) -> str:
    if not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions")):
        return every
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        values = ",".join(expr.get("values") or [])
        parts.append(f"{expr['key']} {expr['operator']} ({values})".replace(" ()", ""))
    return "{" + ", ".join(parts) + "}"


# --- ports ---------------------------------------------------------------------------


def _ports(rule_ports: Sequence[Mapping[str, Any]] | None) -> tuple[PortRange, ...]:
    if not rule_ports:
        return ALL_PORTS
    out = []
    for p in rule_ports:
        protocol = p.get("protocol") or "TCP"
        port = p.get("port")
        if port is None:
            out.append(PortRange(protocol=protocol))
        elif isinstance(port, str) and not port.isdigit():
            out.append(PortRange(protocol=protocol, named=port))
        else:
            first = int(port)
            out.append(
                PortRange(protocol=protocol, first=first, last=int(p.get("endPort") or first))
            )
    return tuple(sorted(set(out)))


def _resolve(ports: Iterable[PortRange], target: PodClass) -> tuple[PortRange, ...]:
    """Named ports resolved against ``target``'s ports; a name it lacks opens nothing."""
    out = []
    for p in ports:
        if p.named is None:
            out.append(p)
            continue
        for name, protocol, number in target.ports:
            if name == p.named and protocol == p.protocol:
                out.append(PortRange(protocol=protocol, first=number, last=number))
    return tuple(sorted(set(out)))


def _intersect(a: Iterable[PortRange], b: Iterable[PortRange]) -> tuple[PortRange, ...]:
    out = set()
    for x in a:
        for y in b:
            if x.named or y.named or x.protocol != y.protocol:
                continue
            first, last = max(x.first, y.first), min(x.last, y.last)
            if first <= last:
                out.add(PortRange(protocol=x.protocol, first=first, last=last))
    return tuple(sorted(out))


def _port_allows(ports: Iterable[PortRange], protocol: str, port: int) -> bool:
    return any(
        p.named is None and p.protocol == protocol and p.first <= port <= p.last for p in ports
    )


def _in_block(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, peer: Peer) -> bool:
    if ip not in ipaddress.ip_network(peer.cidr, strict=False):
        return False
    return not any(ip in ipaddress.ip_network(e, strict=False) for e in peer.excepts)


# --- the analysis -------------------------------------------------------------------


def _policy_types(spec: Mapping[str, Any]) -> set[str]:
    declared = spec.get("policyTypes")
    if declared:
        return set(declared)
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def _peer(
    raw: Mapping[str, Any],
    *,
    namespace: str,
    namespace_labels: Mapping[str, str],
    classes: Sequence[PodClass],
) -> Peer:
    if "ipBlock" in raw:
        block = raw["ipBlock"]
        return Peer(kind="network", cidr=block["cidr"], excepts=tuple(block.get("except") or ()))
    ns_selector = raw.get("namespaceSelector")
    pod_selector = raw.get("podSelector")
    if ns_selector is None:
        ours = True
        namespaces = f"this namespace ({namespace})"
    else:
        ours = _matches(ns_selector, namespace_labels)
        namespaces = _describe(ns_selector, every="every namespace")
        namespaces = namespaces if namespaces == "every namespace" else f"namespaces {namespaces}"
    covered = tuple(c.name for c in classes if ours and _matches(pod_selector, c.labels))
    return Peer(
        kind="pods",
        namespaces=namespaces,
        pods=_describe(pod_selector, every="all pods"),
        classes=covered,
    )


def analyse_policies(
    *,
    namespace: str,
    namespace_labels: Mapping[str, str],
    policies: Sequence[Mapping[str, Any]],
    pod_classes: Sequence[PodClass],
) -> IsolationReport:
    """Apply steps 1-6 of the module docstring to ``policies`` for each of ``pod_classes``."""
    reaches = []
    grants_of: dict[tuple[str, str], list[Grant]] = {}
    isolated_of: dict[tuple[str, str], bool] = {}
    for pod_class in pod_classes:
        for direction, key, peers_key in (
            ("Egress", "egress", "to"),
            ("Ingress", "ingress", "from"),
        ):
            isolated = False
            grants: list[Grant] = []
            for policy in policies:
                spec = policy.get("spec") or {}
                if direction not in _policy_types(spec):
                    continue
                if not _matches(spec.get("podSelector"), pod_class.labels):
                    continue
                isolated = True
                name = str((policy.get("metadata") or {}).get("name", "?"))
                for rule in spec.get(key) or []:
                    ports = _ports(rule.get("ports"))
                    peers = rule.get(peers_key) or []
                    if not peers:
                        grants.append(Grant(peer=ANYWHERE, ports=ports, policy=name))
                    for raw in peers:
                        peer = _peer(
                            raw,
                            namespace=namespace,
                            namespace_labels=namespace_labels,
                            classes=pod_classes,
                        )
                        grants.append(Grant(peer=peer, ports=ports, policy=name))
            grants_of[(pod_class.name, key)] = sorted(set(grants))
            isolated_of[(pod_class.name, key)] = isolated
        reaches.append(
            ClassReach(
                pod_class=pod_class.name,
                egress_isolated=isolated_of[(pod_class.name, "egress")],
                egress=tuple(grants_of[(pod_class.name, "egress")]),
                ingress_isolated=isolated_of[(pod_class.name, "ingress")],
                ingress=tuple(grants_of[(pod_class.name, "ingress")]),
            )
        )
    paths = []
    for src in pod_classes:
        for dst in pod_classes:
            sent = _allowed(grants_of[(src.name, "egress")], isolated_of[(src.name, "egress")], dst)
            taken = _allowed(
                grants_of[(dst.name, "ingress")], isolated_of[(dst.name, "ingress")], src, dst
            )
            ports = _intersect(sent, taken)
            if ports:
                paths.append(Path(source=src.name, destination=dst.name, ports=ports))
    names = tuple(sorted(str((p.get("metadata") or {}).get("name", "?")) for p in policies))
    return IsolationReport(
        namespace=namespace, classes=tuple(reaches), paths=tuple(sorted(paths)), policies=names
    )


def _allowed(
    grants: Sequence[Grant], isolated: bool, other: PodClass, target: PodClass | None = None
) -> tuple[PortRange, ...]:
    """Ports open between this class and ``other`` (a local class), resolved on the target.

    For egress the target is ``other``; for ingress it is the class itself (``target``).
    """
    resolve_on = target or other
    if not isolated:
        return ALL_PORTS
    out: list[PortRange] = []
    for g in grants:
        if g.peer.kind == "anywhere" or (g.peer.kind == "pods" and other.name in g.peer.classes):
            out += _resolve(g.ports, resolve_on)
    return tuple(sorted(set(out)))
