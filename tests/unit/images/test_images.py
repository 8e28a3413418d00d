"""The Dockerfiles under images/ install what the local backend runs, hardened.

No Docker engine runs here, so the images are checked as files: parsed with
dockerfile-parse, every ``COPY`` source must exist, the final stage must run as the
uid the controller's pods run as, install only under ``images/constraints.txt`` (which
must equal the versions in this virtualenv, the ones the tests and ``make demo`` use),
and carry no sudo. The operator's CI builds them.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from controller.kube import RenderSettings
from controller.kube._objects import SINGLEUSER_PORT
from controller.workspace._hubconfig import LAB_SETTINGS_DIR, SERVER_EXTENSION

ROOT = Path(__file__).resolve().parents[3]
#: image -> (Dockerfile, target stage)
IMAGES = {
    "singleuser": ("images/Dockerfile", "singleuser"),
    "hub": ("images/Dockerfile", "hub"),
    "proxy": ("images/proxy/Dockerfile", None),
}
PINS: dict[str, Any] = runpy.run_path(str(ROOT / "hack" / "pins.py"))


def _parse(path: str) -> list[dict[str, Any]]:
    with (ROOT / path).open("rb") as f:
        structure: list[dict[str, Any]] = DockerfileParser(fileobj=f).structure
    return structure


def _stages(path: str) -> dict[str | None, tuple[str, list[dict[str, Any]]]]:
    """Each stage by name (None: an unnamed last stage): its base and instructions."""
    stages: dict[str | None, tuple[str, list[dict[str, Any]]]] = {}
    current: list[dict[str, Any]] = []
    for ins in _parse(path):
        if ins["instruction"] == "FROM":
            base, _, name = ins["value"].partition(" AS ")
            current = []
            stages[name.strip() or None] = (base.strip(), current)
        elif stages:
            current.append(ins)
    return stages


def _image(image: str) -> list[dict[str, Any]]:
    """The instructions that make ``image``: its target stage after the stages it is FROM."""
    path, target = IMAGES[image]
    stages = _stages(path)
    chain: list[dict[str, Any]] = []
    name: str | None = target
    while name in stages:
        base, instructions = stages[name]
        chain = instructions + chain
        name = base if base in stages else "\0"
    return chain


def _values(stage: list[dict[str, Any]], instruction: str) -> list[str]:
    return [ins["value"] for ins in stage if ins["instruction"] == instruction]


def test_the_images_pin_exactly_what_the_local_backend_runs() -> None:
    installed = PINS["runtime_closure"]()
    assert PINS["differences"](installed, PINS["read"]()) == []
    # the pins are the set the workspace needs, not an empty or partial file
    assert {"jupyterhub", "jupyterlab", "jupyter-server", "oauthenticator"} <= installed.keys()


def test_a_dependency_bump_without_new_pins_is_named() -> None:
    pinned = {"jupyterlab": "4.0.0", "gone": "1.0"}
    assert PINS["differences"]({"jupyterlab": "4.2.0", "new": "2.0"}, pinned) == [
        "gone==1.0 is pinned but is no runtime dependency any more",
        "jupyterlab is 4.2.0 here but pinned at 4.0.0",
        "new 2.0 is a runtime dependency but is not pinned",
    ]


@pytest.mark.parametrize("path", sorted({path for path, _ in IMAGES.values()}))
def test_every_copied_path_exists(path: str) -> None:
    for ins in _parse(path):
        if ins["instruction"] == "COPY" and not ins["value"].startswith("--from="):
            *sources, _ = ins["value"].split()
            for source in sources:
                assert (ROOT / source).exists(), f"{path} copies {source}"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_an_escape_to_root_finds_no_root_user_and_no_sudo(image: str) -> None:
    stage = _image(image)
    users = _values(stage, "USER")
    settings = RenderSettings()
    assert users, "the final stage names its user"
    assert users[-1] == f"{settings.run_as_user}:{settings.run_as_group}", (
        "the last USER is the pods' numeric uid and gid"
    )
    runs = " ".join(_values(stage, "RUN"))
    assert "sudo" not in runs.replace("! command -v sudo", "")
    assert "! command -v sudo" in runs, "the build fails if the base image brings sudo"


@pytest.mark.parametrize("image", ["singleuser", "hub"])
def test_python_images_install_only_under_the_pins(image: str) -> None:
    for ins in _parse(IMAGES[image][0]):
        if ins["instruction"] == "RUN" and "pip " in ins["value"]:
            for command in ins["value"].split("&&"):
                if "pip wheel" in command or "pip install" in command:
                    assert "-c " in command, command
                    assert "constraints.txt" in command, command
    final = " ".join(_values(_image(image), "RUN"))
    assert "--no-index" in final, "the runtime stage installs only the built wheels"
    assert "pip uninstall -y pip" in final
    assert "gcc" not in final


def test_the_workspace_image_runs_the_hardened_server_the_controller_starts() -> None:
    stage = _image("singleuser")
    config = json.loads((ROOT / "images/singleuser/jupyter_server_config.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"] == {SERVER_EXTENSION: True}
    assert config["ServerApp"]["reraise_server_extension_failures"] is True
    copies = " ".join(_values(stage, "COPY"))
    assert "/etc/jupyter/jupyter_server_config.d/" in copies
    lab = LAB_SETTINGS_DIR.relative_to(ROOT) / "page_config.json"
    assert f"{lab} /usr/local/share/jupyter/lab/settings/page_config.json" in copies
    assert _values(stage, "CMD") == ['["jupyterhub-singleuser"]']
    assert _values(stage, "EXPOSE") == [str(SINGLEUSER_PORT)]


def test_the_proxy_image_runs_the_locked_proxy() -> None:
    stage = _image("proxy")
    runs = " ".join(_values(stage, "RUN"))
    assert "npm ci" in runs, "npm ci installs exactly package-lock.json"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert "configurable-http-proxy" in lock["packages"][""]["dependencies"]


def test_both_python_images_are_built_from_one_build_stage_on_the_tests_python() -> None:
    stages = _stages("images/Dockerfile")
    assert stages["hub"][0] == stages["singleuser"][0] == "runtime"
    assert stages["runtime"][0] == stages["build"][0] == "${PYTHON_IMAGE}"
    args = [i["value"] for i in _parse("images/Dockerfile") if i["instruction"] == "ARG"]
    assert args[0].startswith(f"PYTHON_IMAGE=python:{sys.version_info[0]}.{sys.version_info[1]}-")
