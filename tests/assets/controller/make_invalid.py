"""Write ``invalid/*.yaml``: Enclave files that admission and the local validator must refuse.

Each file is the nbdc-high example with one mistake or attack, named after it;
``invalid/expected.yaml`` maps each file to the field the refusal must name.
Run from the repository root: ``.venv/bin/python -m tests.assets.controller.make_invalid``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
BASE = HERE.parents[2] / "examples" / "enclaves" / "nbdc-high.yaml"

Doc = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return edit


def _drop(path: str) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[key]
        del target[last]

    return edit


def _add_member(user: str) -> Callable[[Doc], None]:
    return lambda doc: doc["spec"]["members"].append({"user": user, "role": "researcher"})


def _add_dataset(name: str, mount: str) -> Callable[[Doc], None]:
    return lambda doc: doc["spec"]["datasets"].append(
        {"name": name, "persistentVolume": "ds-other-v1", "mountPath": mount}
    )


#: file stem -> (edit, the field the refusal names)
CASES: dict[str, tuple[Callable[[Doc], None], str]] = {
    "unknown_tier": (_set("spec.tier", "nbdc-medium"), "spec.tier"),
    "not_after_before_not_before": (
        _set("spec.approval.notAfter", "2026-11-30T00:00:00Z"),
        "spec.approval.notAfter",
    ),
    "not_after_equal_to_not_before": (
        _set("spec.approval.notAfter", "2026-12-01T00:00:00Z"),
        "spec.approval.notAfter",
    ),
    "not_after_not_a_time": (_set("spec.approval.notAfter", "next year"), "spec.approval.notAfter"),
    "missing_approval": (_drop("spec.approval"), "spec.approval"),
    "missing_ethics_review_id": (
        _drop("spec.approval.ethicsReviewId"),
        "spec.approval.ethicsReviewId",
    ),
    "blank_ethics_review_id": (
        _set("spec.approval.ethicsReviewId", " "),
        "spec.approval.ethicsReviewId",
    ),
    "missing_data_use_agreement_id": (
        _drop("spec.approval.dataUseAgreementId"),
        "spec.approval.dataUseAgreementId",
    ),
    "no_members": (_set("spec.members", []), "spec.members"),
    "member_user_with_space": (
        _set("spec.members.0.user", "r tanaka@company-a.example"),
        "spec.members[0].user",
    ),
    "member_unknown_role": (_set("spec.members.1.role", "superuser"), "spec.members[1].role"),
    "duplicate_member": (_add_member("k.sato@tohoku.example"), "spec.members"),
    "member_not_in_canonical_case": (_add_member("K.Sato@Tohoku.example"), "spec.members[2].user"),
    "access_network_without_prefix": (
        _set("spec.accessNetworks", ["192.0.2.0"]),
        "spec.accessNetworks[0]",
    ),
    "access_network_with_host_bits": (
        _set("spec.accessNetworks", ["192.0.2.1/24"]),
        "spec.accessNetworks[0]",
    ),
    "access_network_whole_internet": (
        _set("spec.accessNetworks", ["0.0.0.0/0"]),
        "spec.accessNetworks[0]",
    ),
    "access_network_whole_internet_v6": (
        _set("spec.accessNetworks", ["192.0.2.0/24", "::/0"]),
        "spec.accessNetworks[1]",
    ),
    "access_network_listed_twice": (
        _set("spec.accessNetworks", ["192.0.2.0/24", "192.0.2.0/24"]),
        "spec.accessNetworks[1]",
    ),
    "no_access_networks": (_drop("spec.accessNetworks"), "spec.accessNetworks"),
    "empty_access_networks": (_set("spec.accessNetworks", []), "spec.accessNetworks"),
    "duplicate_dataset_name": (
        _add_dataset("microbiome-16s", "/data/elsewhere"),
        "spec.datasets",
    ),
    "duplicate_mount_path": (_add_dataset("other", "/data/microbiome-16s"), "spec.datasets"),
    "mount_path_inside_another": (
        _add_dataset("other", "/data/microbiome-16s/extra"),
        "spec.datasets",
    ),
    "mount_path_traversal": (
        _set("spec.datasets.0.mountPath", "/data/../etc"),
        "spec.datasets[0].mountPath",
    ),
    "mount_path_over_home": (
        _set("spec.datasets.0.mountPath", "/home/jovyan"),
        "spec.datasets[0].mountPath",
    ),
    "dataset_name_not_a_label": (
        _set("spec.datasets.0.name", "Microbiome_16S"),
        "spec.datasets[0].name",
    ),
    "workspace_cpu_not_a_quantity": (_set("spec.workspace.cpu", "two"), "spec.workspace.cpu"),
    "name_too_long_for_a_namespace": (_set("metadata.name", "a" * 56), "metadata.name"),
}


def main() -> None:
    base = yaml.safe_load(BASE.read_text("utf-8"))
    out = HERE / "invalid"
    out.mkdir(exist_ok=True)
    expected = {}
    for stem, (edit, field) in CASES.items():
        doc = copy.deepcopy(base)
        doc["metadata"]["name"] = stem.replace("_", "-")
        edit(doc)
        text = f"# made by make_invalid.py: {stem.replace('_', ' ')}\n"
        text += yaml.safe_dump(doc, sort_keys=False)
        (out / f"{stem}.yaml").write_text(text, "utf-8")
        expected[stem] = field
    (out / "expected.yaml").write_text(
        "# file stem -> the field its refusal must name (made by make_invalid.py)\n"
        + yaml.safe_dump(expected, sort_keys=False),
        "utf-8",
    )


if __name__ == "__main__":
    main()
