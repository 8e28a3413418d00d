"""The local backend without processes: reading an Enclave directory, the command's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.local._registry import scan
from tests.harness.enclave_files import enclave_doc


def _write(path: Path, doc: object) -> None:
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))


def test_valid_files_are_served_and_a_malformed_one_is_named_with_field_and_reason(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "good.yaml", enclave_doc("good"))
    bad = enclave_doc("bad")
    del bad["spec"]["members"]
    _write(tmp_path / "bad.yaml", bad)
    _write(tmp_path / "broken.yml", "spec: [unclosed")
    result = scan(tmp_path)
    assert list(result.served) == ["good"]
    refused = {r.path.name: (r.field, r.reason) for r in result.refused}
    assert refused == {
        "bad.yaml": ("spec.members", "is required"),
        "broken.yml": ("(file)", "is not valid YAML (ParserError)"),
    }
    assert str(next(r for r in result.refused if r.path.name == "bad.yaml").error) == (
        f"{tmp_path / 'bad.yaml'}: spec.members: is required."
    )


def test_second_file_claiming_an_enclaves_name_takes_over_neither(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", enclave_doc("gut"))
    hijack = enclave_doc("gut")
    hijack["spec"]["members"] = [{"user": "intruder", "role": "researcher"}]
    _write(tmp_path / "b.yaml", hijack)
    result = scan(tmp_path)
    assert result.served == {}
    assert sorted((r.path.name, r.field) for r in result.refused) == [
        ("a.yaml", "metadata.name"),
        ("b.yaml", "metadata.name"),
    ]


def test_hidden_and_other_files_are_not_read(tmp_path: Path) -> None:
    _write(tmp_path / ".editor-swap.yaml", "not: an enclave")
    _write(tmp_path / "notes.txt", "not: an enclave")
    _write(tmp_path / "good.yaml", enclave_doc("good"))
    result = scan(tmp_path)
    assert list(result.served) == ["good"]
    assert result.refused == ()


def test_a_changed_file_has_a_new_digest(tmp_path: Path) -> None:
    _write(tmp_path / "good.yaml", enclave_doc("good"))
    before = scan(tmp_path).served["good"].digest
    _write(tmp_path / "good.yaml", enclave_doc("good", displayName="Renamed"))
    assert scan(tmp_path).served["good"].digest != before


def test_controller_run_needs_a_backend_and_the_local_backends_inputs(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from controller.cli import cli

    runner = CliRunner()
    r = runner.invoke(cli, ["controller", "run"])
    assert r.exit_code == 2
    assert "give --local DIR" in r.output
    r = runner.invoke(cli, ["controller", "run", "--local", str(tmp_path), "--kube"])
    assert r.exit_code == 2
    assert "not both" in r.output
    r = runner.invoke(cli, ["controller", "run", "--local", str(tmp_path)])
    assert r.exit_code == 2
    assert "--local needs --portal-admin-token-file" in r.output


@pytest.mark.parametrize(
    ("option", "value"),
    [("--settings", "settings.yaml"), ("--kubeconfig", "kubeconfig"), ("--lease-namespace", "x")],
)
def test_a_kube_only_option_given_to_the_local_backend_is_refused_not_ignored(
    tmp_path: Path, option: str, value: str
) -> None:
    """Accepted and ignored, a setting would look in force to the operator who gave it."""
    from click.testing import CliRunner

    from controller.cli import cli

    given = tmp_path / value
    given.write_text("{}\n")
    token = tmp_path / "token"
    token.write_text("t" * 40)
    args = ["controller", "run", "--local", str(tmp_path), option, str(given)]
    args += ["--portal-admin-token-file", str(token), "--audit-tokens", str(token)]
    r = CliRunner().invoke(cli, [*args, "--audit-store", f"sqlite:///{tmp_path / 'a.db'}"])
    assert r.exit_code == 2
    assert r.output == f"enclave: {option} applies to --kube only, not to --local\n"
