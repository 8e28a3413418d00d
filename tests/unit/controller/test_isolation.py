"""Isolation computed from NetworkPolicies: table tests with tricky policies.

Each case is a set of policies as the API returns them and what it must (not)
allow. The pod classes are deliberately tiny: ``hub`` and ``user`` in namespace
``ns``, and a pod of someone else with no labels.
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.kube import PodClass, RenderSettings, analyse_policies
from controller.kube._isolation import IsolationReport
from controller.kube._live import expected_isolation
from controller.kube._spec import read_enclave_file
from policies import load_catalog
from tests.assets.controller import EXAMPLES

NS = "ns"
HUB = PodClass(name="hub", labels={"c": "hub", "app": "x"}, ports=(("api", "TCP", 8081),))
USER = PodClass(name="user", labels={"c": "user", "app": "x"}, ports=(("nb", "TCP", 8888),))
OTHER = PodClass(name="other", labels={})
CLASSES = (HUB, USER, OTHER)
METADATA = "169.254.169.254"


def policy(name: str, selector: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"podSelector": selector, **spec}}


DENY = policy("deny", {}, policyTypes=["Ingress", "Egress"])
USER_TO_HUB = policy(
    "user-out",
    {"matchLabels": {"c": "user"}},
    policyTypes=["Egress"],
    egress=[{"to": [{"podSelector": {"matchLabels": {"c": "hub"}}}], "ports": [{"port": 8081}]}],
)
HUB_FROM_USER = policy(
    "hub-in",
    {"matchLabels": {"c": "hub"}},
    ingress=[
        {"from": [{"podSelector": {"matchLabels": {"c": "user"}}}], "ports": [{"port": 8081}]}
    ],
)


def analyse(*policies: dict[str, Any]) -> IsolationReport:
    return analyse_policies(
        namespace=NS,
        namespace_labels={"kubernetes.io/metadata.name": NS},
        policies=list(policies),
        pod_classes=CLASSES,
    )


def paths(report: IsolationReport) -> dict[tuple[str, str], list[str]]:
    return {(p.source, p.destination): [str(x) for x in p.ports] for p in report.paths}


def test_no_policy_isolates_nothing() -> None:
    report = analyse()
    assert not report.of("user").egress_isolated
    assert report.reaches_address("user", METADATA, port=80)
    assert paths(report)[("user", "hub")] == ["SCTP/any", "TCP/any", "UDP/any"]


def test_default_deny_alone_allows_nothing() -> None:
    report = analyse(DENY)
    for c in CLASSES:
        reach = report.of(c.name)
        assert reach.egress_isolated
        assert reach.ingress_isolated
        assert reach.egress == ()
        assert reach.ingress == ()
    assert report.paths == ()
    assert not report.reaches_address("user", "8.8.8.8", port=443)


def test_a_path_needs_both_egress_and_ingress() -> None:
    assert paths(analyse(DENY, USER_TO_HUB)) == {}
    assert paths(analyse(DENY, USER_TO_HUB, HUB_FROM_USER)) == {("user", "hub"): ["TCP/8081"]}


def test_an_allow_all_policy_added_by_someone_else_widens_isolation() -> None:
    """Policies only add: someone's empty-selector egress rule opens every pod to the internet."""
    everything = policy(
        "someone-elses",
        {},
        policyTypes=["Egress"],
        egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
    )
    report = analyse(DENY, USER_TO_HUB, everything)
    assert report.reaches_address("user", "8.8.8.8", port=443)
    assert report.reaches_address("other", METADATA, port=80)
    assert "someone-elses" in report.policies
    assert report.differences(analyse(DENY, USER_TO_HUB)) == (
        "allows hub egress network 0.0.0.0/0 on SCTP/any",
        "allows hub egress network 0.0.0.0/0 on TCP/any",
        "allows hub egress network 0.0.0.0/0 on UDP/any",
        "allows other egress network 0.0.0.0/0 on SCTP/any",
        "allows other egress network 0.0.0.0/0 on TCP/any",
        "allows other egress network 0.0.0.0/0 on UDP/any",
        "allows user egress network 0.0.0.0/0 on SCTP/any",
        "allows user egress network 0.0.0.0/0 on TCP/any",
        "allows user egress network 0.0.0.0/0 on UDP/any",
    )


def test_an_egress_rule_without_destination_reaches_anywhere() -> None:
    open_rule = policy(
        "open",
        {"matchLabels": {"c": "user"}},
        egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}],
    )
    report = analyse(DENY, open_rule)
    assert report.reaches_address("user", METADATA, port=53, protocol="UDP")
    assert not report.reaches_address("user", METADATA, port=53, protocol="TCP")
    assert str(report.of("user").egress[0].peer) == "anywhere (every address and pod)"


def test_ip_block_except_carves_out_the_metadata_address() -> None:
    carve = policy(
        "carve",
        {"matchLabels": {"c": "user"}},
        policyTypes=["Egress"],
        egress=[
            {
                "to": [{"ipBlock": {"cidr": "169.254.0.0/16", "except": ["169.254.169.254/32"]}}],
                "ports": [{"port": 80}],
            }
        ],
    )
    report = analyse(DENY, carve)
    assert report.reaches_address("user", "169.254.1.1", port=80)
    assert not report.reaches_address("user", METADATA, port=80)
    assert not report.reaches_address("user", "169.254.1.1", port=81)


def test_overlapping_rules_are_a_union() -> None:
    narrow = policy(
        "narrow",
        {"matchLabels": {"c": "user"}},
        policyTypes=["Egress"],
        egress=[
            {"to": [{"podSelector": {"matchLabels": {"c": "hub"}}}], "ports": [{"port": 8081}]}
        ],
    )
    wide = policy(
        "wide",
        {"matchExpressions": [{"key": "c", "operator": "Exists"}]},
        policyTypes=["Egress"],
        egress=[{"to": [{"podSelector": {}}], "ports": [{"port": 8000, "endPort": 8100}]}],
    )
    hub_in = policy(
        "hub-in-all", {"matchLabels": {"c": "hub"}}, ingress=[{"from": [{"podSelector": {}}]}]
    )
    report = analyse(DENY, narrow, wide, hub_in)
    assert paths(report)[("user", "hub")] == ["TCP/8000-8100", "TCP/8081"]
    # the pod without labels is not selected by "Exists": it keeps only the default deny
    assert report.of("other").egress == ()


def test_named_ports_resolve_on_the_destination() -> None:
    named = policy(
        "named",
        {"matchLabels": {"c": "user"}},
        policyTypes=["Egress"],
        egress=[
            {
                "to": [{"podSelector": {"matchLabels": {"app": "x"}}}],
                "ports": [{"port": "api"}, {"port": "nb"}],
            }
        ],
    )
    hub_in = policy(
        "hub-in-named", {"matchLabels": {"c": "hub"}}, ingress=[{"ports": [{"port": "api"}]}]
    )
    report = analyse(DENY, named, hub_in)
    # "api" is the hub's 8081; "nb" exists only on user pods, so it opens nothing to the hub
    assert paths(report) == {("user", "hub"): ["TCP/8081"]}
    assert [str(p) for p in report.of("user").egress[0].ports] == ["TCP/api", "TCP/nb"]


def test_policy_types_default_from_the_rules() -> None:
    """An ingress-only policy without policyTypes does not isolate egress."""
    ingress_only = policy("in-only", {}, ingress=[])
    report = analyse(ingress_only)
    assert report.of("user").ingress_isolated
    assert not report.of("user").egress_isolated
    with_egress = policy(
        "with-egress", {}, egress=[{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]
    )
    assert analyse(with_egress).of("user").egress_isolated


def test_an_empty_namespace_selector_means_every_namespace() -> None:
    everywhere = policy(
        "all-ns",
        {"matchLabels": {"c": "user"}},
        policyTypes=["Egress"],
        egress=[{"to": [{"namespaceSelector": {}}]}],
    )
    report = analyse(DENY, everywhere)
    peer = report.of("user").egress[0].peer
    assert str(peer) == "pods all pods in every namespace [hub, user, other]"
    # pods everywhere, but no address outside the cluster
    assert not report.reaches_address("user", "8.8.8.8", port=443)


def test_a_selector_for_another_namespace_does_not_cover_our_pods() -> None:
    elsewhere = policy(
        "elsewhere",
        {"matchLabels": {"c": "user"}},
        policyTypes=["Egress"],
        egress=[
            {
                "to": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "other-ns"}
                        },
                        "podSelector": {"matchLabels": {"c": "hub"}},
                    }
                ]
            }
        ],
    )
    report = analyse(DENY, elsewhere)
    assert report.of("user").egress[0].peer.classes == ()


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ({"key": "c", "operator": "In", "values": ["hub"]}, ["hub"]),
        ({"key": "c", "operator": "NotIn", "values": ["hub"]}, ["user", "other"]),
        ({"key": "c", "operator": "DoesNotExist"}, ["other"]),
        ({"key": "c", "operator": "Gt", "values": ["1"]}, []),
    ],
)
def test_match_expressions(expression: dict[str, Any], selected: list[str]) -> None:
    isolate = policy("expr", {"matchExpressions": [expression]}, policyTypes=["Egress"])
    report = analyse(isolate)
    assert [c.name for c in CLASSES if report.of(c.name).egress_isolated] == selected


def test_rendered_policies_keep_workspaces_off_the_internet_and_metadata() -> None:
    settings = RenderSettings(api_server_cidrs=("10.0.0.1/32",))
    for path in EXAMPLES:
        enclave = read_enclave_file(path)
        report = expected_isolation(
            enclave=enclave, tier=load_catalog().get(enclave.tier), settings=settings
        )
        for c in ("hub", "proxy", "singleuser", "other"):
            assert report.of(c).egress_isolated
            assert not report.reaches_address(c, METADATA, port=80)
            assert not report.reaches_address(c, "8.8.8.8", port=443)
        assert report.of("other").egress == ()
        assert {(p.source, p.destination): [str(x) for x in p.ports] for p in report.paths} == {
            ("hub", "proxy"): ["TCP/8001"],
            ("hub", "singleuser"): ["TCP/8888"],
            ("proxy", "hub"): ["TCP/8081"],
            ("proxy", "singleuser"): ["TCP/8888"],
            ("singleuser", "hub"): ["TCP/8081"],
        }
        assert report.differences(report) == ()
