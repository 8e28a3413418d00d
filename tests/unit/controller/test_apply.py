"""The drift test of ``sync_objects``: does the live object already hold everything we render?"""

from __future__ import annotations

from typing import Any

import pytest

from controller.kube._apply import _contains

OURS = {
    "metadata": {"name": "singleuser", "labels": {"a": "1"}},
    "spec": {"egress": [{"to": [{"podSelector": {"matchLabels": {"c": "hub"}}}]}]},
}


@pytest.mark.parametrize(
    ("live", "holds"),
    [
        (OURS, True),
        # server-set fields and defaults around ours do not count as drift
        (
            {
                "metadata": {"name": "singleuser", "labels": {"a": "1", "b": "2"}, "uid": "u"},
                "spec": {
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"c": "hub"}}}]}],
                    "policyTypes": ["Egress"],
                },
            },
            True,
        ),
        # an extra egress rule (someone opened a path) is drift
        (
            {
                "metadata": {"name": "singleuser", "labels": {"a": "1"}},
                "spec": {
                    "egress": [
                        {"to": [{"podSelector": {"matchLabels": {"c": "hub"}}}]},
                        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
                    ]
                },
            },
            False,
        ),
        # a rule rewritten to everywhere is drift
        (
            {
                "metadata": {"name": "singleuser", "labels": {"a": "1"}},
                "spec": {"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]},
            },
            False,
        ),
        # a label changed is drift
        ({**OURS, "metadata": {"name": "singleuser", "labels": {"a": "2"}}}, False),
        # a missing spec is drift
        ({"metadata": OURS["metadata"]}, False),
    ],
)
def test_contains(live: dict[str, Any], holds: bool) -> None:
    assert _contains(live, OURS) is holds
