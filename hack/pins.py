"""The exact versions of everything ``enclave`` needs at run time, for the images.

``images/constraints.txt`` pins the transitive closure of ``enclave``'s runtime
requirements (its ``dev`` extra excluded) at the versions installed in this
virtualenv. ``scripts/setup.sh`` installs the virtualenv with the same file as a
constraint and the Dockerfiles install with it too, so the local backend (what
``make demo`` and the tests run) and the images run the same package set.

    python hack/pins.py --check   # exit 1 naming each difference (make lint)
    python hack/pins.py --write   # rewrite images/constraints.txt from .venv
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "images" / "constraints.txt"
HEADER = (
    "# Exact versions of enclave's runtime dependencies (transitively), shared by\n"
    "# scripts/setup.sh and the Dockerfiles under images/. Generated: python hack/pins.py --write\n"
)


def _applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    env = dict(default_environment())
    if not extras:
        return requirement.marker.evaluate({**env, "extra": ""})
    return any(requirement.marker.evaluate({**env, "extra": e}) for e in extras)


def runtime_closure(root: str = "enclave") -> dict[str, str]:
    """Every distribution ``root`` needs at run time, by canonical name, with its version."""
    found: dict[str, str] = {}
    pending: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        key = (canonicalize_name(name), extras)
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(name)
        if canonicalize_name(name) != canonicalize_name(root):
            found[canonicalize_name(name)] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            if _applies(requirement, extras):
                pending.append((requirement.name, frozenset(requirement.extras)))
    return dict(sorted(found.items()))


def render(pins: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in pins.items())


def read(path: Path = CONSTRAINTS) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text("utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def differences(installed: dict[str, str], pinned: dict[str, str]) -> list[str]:
    """One sentence per package whose installed and pinned versions disagree."""
    out = []
    for name in sorted(installed.keys() | pinned.keys()):
        have, pin = installed.get(name), pinned.get(name)
        if pin is None:
            out.append(f"{name} {have} is a runtime dependency but is not pinned")
        elif have is None:
            out.append(f"{name}=={pin} is pinned but is no runtime dependency any more")
        elif have != pin:
            out.append(f"{name} is {have} here but pinned at {pin}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    args = parser.parse_args()
    installed = runtime_closure()
    if args.write:
        CONSTRAINTS.write_text(render(installed), "utf-8")
        return 0
    problems = differences(installed, read())
    for problem in problems:
        print(
            f"images/constraints.txt: {problem}; run: python hack/pins.py --write", file=sys.stderr
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
