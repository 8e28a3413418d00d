"""``render_enclave`` and ``enclave render``: invariants over every example, and the CLI."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from click.testing import CliRunner

from controller.cli import cli
from controller.kube import HubConfig, RenderSettings, enclave_crd, render_enclave, to_yaml
from controller.kube._hubconfig import make_kube_hub_config
from controller.kube._spec import read_enclave_file
from policies import load_catalog
from tests.assets.controller import EXAMPLES, INVALID

SETTINGS = RenderSettings(api_server_cidrs=("10.0.0.1/32",))
METADATA = ipaddress.ip_address("169.254.169.254")


def _render(path: Path, hub_config: HubConfig | None = None) -> list[dict[str, Any]]:
    enclave = read_enclave_file(path)
    tier = load_catalog().get(enclave.tier)
    return render_enclave(enclave=enclave, tier=tier, settings=SETTINGS, hub_config=hub_config)


def _pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]


@pytest.fixture(params=EXAMPLES, ids=[p.stem for p in EXAMPLES])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return _render(request.param)


def test_egress_never_reaches_everywhere_or_the_metadata_address(
    rendered: list[dict[str, Any]],
) -> None:
    for policy in (o for o in rendered if o["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), f"{policy['metadata']['name']}: egress rule without destination"
            for peer in rule["to"]:
                assert peer, "an empty peer matches every pod in the cluster"
                assert peer.get("podSelector") or peer.get("ipBlock"), peer
                if "ipBlock" in peer:
                    net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    assert net.prefixlen > 0
                    assert METADATA not in net


def test_the_first_policy_denies_all_traffic_of_every_pod(rendered: list[dict[str, Any]]) -> None:
    policies = [o for o in rendered if o["kind"] == "NetworkPolicy"]
    assert policies[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    # and it is applied before any workload
    kinds = [o["kind"] for o in rendered]
    assert kinds.index("NetworkPolicy") < kinds.index("Deployment")


def test_every_object_carries_the_labels(rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        labels = obj["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/managed-by",
            "enclave.dev/enclave",
        ):
            assert key in labels, (obj["kind"], obj["metadata"]["name"], key)


def test_every_container_is_restricted(rendered: list[dict[str, Any]]) -> None:
    for spec in _pod_specs(rendered):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["runAsNonRoot"] is True
            assert container["resources"]["limits"]


def test_only_the_hub_gets_a_service_account_token(rendered: list[dict[str, Any]]) -> None:
    tokens = {
        o["metadata"]["name"]: o["automountServiceAccountToken"]
        for o in rendered
        if o["kind"] == "ServiceAccount"
    }
    assert tokens == {"default": False, "hub": True, "proxy": False, "singleuser": False}
    for spec in _pod_specs(rendered):
        assert spec["automountServiceAccountToken"] is (spec["serviceAccountName"] == "hub")


def test_dedicated_tiers_pin_every_pod_to_the_projects_pool(rendered: list[dict[str, Any]]) -> None:
    namespace = rendered[0]
    tier = load_catalog().get(namespace["metadata"]["labels"]["enclave.dev/tier"])
    name = namespace["metadata"]["labels"]["enclave.dev/enclave"]
    for spec in _pod_specs(rendered):
        if tier.compute.dedicated_nodes:
            assert spec["nodeSelector"] == {"enclave.dev/pool": name}
        else:
            assert "nodeSelector" not in spec


def test_render_is_a_pure_function() -> None:
    assert to_yaml(_render(EXAMPLES[0])) == to_yaml(_render(EXAMPLES[0]))


def _hub_config_map(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"]
    assert config_map["metadata"]["name"] == "hub-config"
    return config_map


def test_the_hub_config_map_is_the_generated_configuration() -> None:
    """The hub's configuration comes from the shared generator, not from a file."""
    enclave = read_enclave_file(EXAMPLES[0])
    tier = load_catalog().get(enclave.tier)
    generated = make_kube_hub_config(
        enclave=enclave, tier=tier, settings=SETTINGS, hub_config=HubConfig()
    )
    data = _hub_config_map(_render(EXAMPLES[0]))["data"]
    assert data == {"jupyterhub_config.py": generated.render()}
    traits = generated.traitlets()
    assert traits["JupyterHub"]["spawner_class"] == "controller.workspace.kube.AuditedKubeSpawner"
    assert traits["JupyterHub"]["admin_access"] is False
    assert traits["ConfigurableHTTPProxy"]["should_start"] is False
    assert traits["KubeSpawner"]["namespace"] == f"enclave-{enclave.name}"


def test_no_secret_value_or_secret_variable_is_in_the_hub_config_map(
    rendered: list[dict[str, Any]],
) -> None:
    """Every secret the hub needs is read from an owner-only file at load time; none is
    written into the ConfigMap (which any reader of the namespace can get) or taken
    from the environment."""
    text = _hub_config_map(rendered)["data"]["jupyterhub_config.py"]
    reads = re.findall(r"_secret\('([^']+)'\)", text)
    assert sorted(reads) == [
        "/run/enclave/client_secret",
        "/run/enclave/crypt_key",
        "/run/enclave/proxy_token",
    ]
    assert "cookie_secret_file = '/run/enclave/cookie_secret'" in text
    for name in (
        "OAUTH_CLIENT_SECRET",
        "CONFIGPROXY_AUTH_TOKEN",
        "JUPYTERHUB_CRYPT_KEY",
        "environ",
    ):
        assert name not in text


def test_a_sites_tightened_tier_reaches_the_workspaces_on_kubernetes() -> None:
    """Without it a workspace on Kubernetes enforced the built-in, looser catalog (#15)."""
    overlay = yaml.safe_dump(
        {
            "tiers": {
                "tommo-strong": {"screen_output": {"budget_bytes": 4 << 20, "warn_bytes": 1 << 20}}
            }
        }
    )
    strong = next(p for p in EXAMPLES if p.stem == "tommo-strong")
    data = _hub_config_map(_render(strong, HubConfig(tier_overlay=overlay)))["data"]
    assert data["tier-overlay.yaml"] == overlay
    config = data["jupyterhub_config.py"]
    assert "'--EnclaveWorkspace.tier_overlay=/etc/enclave/tier-overlay.yaml'" in config
    assert "'mountPath': '/etc/enclave', 'readOnly': True" in config


def test_no_secret_is_ever_rendered(rendered: list[dict[str, Any]]) -> None:
    assert "Secret" not in {o["kind"] for o in rendered}


# --- the CLI --------------------------------------------------------------------------


def test_cli_render_prints_every_object() -> None:
    result = CliRunner().invoke(cli, ["render", str(EXAMPLES[0])])
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.stdout)) == _render_default(EXAMPLES[0])


def _render_default(path: Path) -> list[dict[str, Any]]:
    enclave = read_enclave_file(path)
    return render_enclave(
        enclave=enclave,
        tier=load_catalog().get(enclave.tier),
        settings=RenderSettings(),
        hub_config=None,
    )


def test_cli_render_refuses_an_invalid_file_with_exit_2_and_no_output() -> None:
    bad = INVALID / "access_network_whole_internet.yaml"
    result = CliRunner().invoke(cli, ["render", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"enclave: {bad}: spec.accessNetworks[0]: must be a network in CIDR notation with no "
        "host bits set and a prefix longer than /0, e.g. 192.0.2.0/24.\n"
    )


def test_cli_render_refuses_a_missing_file() -> None:
    result = CliRunner().invoke(cli, ["render", "/nonexistent/enclave.yaml"])
    assert result.exit_code == 2
    assert "cannot be read" in result.stderr


def test_cli_render_refuses_unsafe_settings(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("api_server_cidrs: ['0.0.0.0/0']\n")
    result = CliRunner().invoke(cli, ["render", str(EXAMPLES[0]), "--settings", str(settings)])
    assert result.exit_code == 2
    assert "api_server_cidrs" in result.stderr
    settings.write_text("hub_imag: typo\n")
    result = CliRunner().invoke(cli, ["render", str(EXAMPLES[0]), "--settings", str(settings)])
    assert result.exit_code == 2
    assert "hub_imag" in result.stderr


def test_cli_crd_prints_the_generated_crd() -> None:
    result = CliRunner().invoke(cli, ["crd"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.stdout) == enclave_crd()


def test_cli_render_puts_the_tier_overlay_in_the_config_map(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("tiers:\n  nbdc-standard:\n    session:\n      idle_timeout_s: 600\n")
    result = CliRunner().invoke(cli, ["render", str(EXAMPLES[0]), "--overlay", str(overlay)])
    assert result.exit_code == 0, result.output
    [config_map] = [o for o in yaml.safe_load_all(result.stdout) if o["kind"] == "ConfigMap"]
    assert config_map["data"]["tier-overlay.yaml"] == overlay.read_text()


def test_cli_render_no_longer_takes_a_hub_configuration_file(tmp_path: Path) -> None:
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c.JupyterHub.admin_access = True\n")
    result = CliRunner().invoke(cli, ["render", str(EXAMPLES[0]), "--hub-config", str(config)])
    assert result.exit_code == 2
    assert "No such option '--hub-config'" in result.stderr


def _deployment(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [deployment] = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name
    ]
    return deployment


def test_the_idle_culler_reaches_the_hub_on_loopback_not_through_the_service_it_cannot_reach(
    rendered: list[dict[str, Any]],
) -> None:
    """The culler runs in the hub's pod; the hub's policy admits no traffic from the hub
    itself, so through the ``hub`` Service (the hub's ``hub_connect_url``) it could
    never cull an idle server."""
    [hub_policy] = [
        o for o in rendered if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "hub"
    ]
    hub_labels = hub_policy["spec"]["podSelector"]["matchLabels"]
    for rule in hub_policy["spec"]["ingress"]:
        for peer in rule["from"]:
            assert peer.get("podSelector", {}).get("matchLabels") != hub_labels
    text = _hub_config_map(rendered)["data"]["jupyterhub_config.py"]
    [services] = [line for line in text.splitlines() if line.startswith("c.JupyterHub.services")]
    assert "'--url=http://127.0.0.1:8081/hub/api'" in services
    # the hub listens on every address of its pod, loopback included
    assert "c.JupyterHub.hub_bind_url = 'http://0.0.0.0:8081'" in text


def test_a_changed_hub_config_rolls_the_hub(rendered: list[dict[str, Any]]) -> None:
    """JupyterHub reads its configuration once: a new member or overlay in ``hub-config``
    must change the hub's pod template, so the Deployment replaces the pod."""
    strong = next(p for p in EXAMPLES if p.stem == "tommo-strong")
    overlay = yaml.safe_dump({"tiers": {"tommo-strong": {"session": {"idle_timeout_s": 600}}}})
    before, after = _render(strong), _render(strong, HubConfig(tier_overlay=overlay))

    def digest(objects: list[dict[str, Any]]) -> str:
        meta = _deployment(objects, "hub")["spec"]["template"]["metadata"]
        value: str = meta["annotations"]["enclave.dev/hub-config-digest"]
        return value

    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest(before))
    assert digest(before) != digest(after)
    assert digest(before) == digest(_render(strong))  # render and controller agree
    # every example's hub carries the digest of its own ConfigMap
    data = _hub_config_map(rendered)["data"]
    assert (
        digest(rendered)
        == "sha256:"
        + hashlib.sha256(
            json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
    )


def test_single_user_servers_are_handed_no_host_name_they_would_need_dns_for(
    rendered: list[dict[str, Any]],
) -> None:
    """Single-user pods have no DNS on any tier: the hub API and the audit intake they
    are given must be addresses. The hub (which has DNS) resolves each Service's name
    to its ClusterIP when it loads its configuration (``_resolved_url``)."""
    text = _hub_config_map(rendered)["data"]["jupyterhub_config.py"]
    lines = [
        line
        for line in text.splitlines()
        if line.startswith(("c.Spawner.", "c.KubeSpawner.", "c.JupyterHub.hub_connect_url"))
    ]
    assert lines
    resolved_call = r"_resolved_url\('[^']*', '[^']*'\)"
    for line in lines:
        bare = re.sub(resolved_call, "", line)
        for url in re.findall(r"'(?:[^']*=)?(https?://[^']*)'", bare):
            host = urlsplit(url).hostname or ""
            try:
                ipaddress.ip_address(host)
            except ValueError:
                pytest.fail(f"{host} in {line!r} needs DNS")
    resolved = re.findall(r"_resolved_url\('([^']*)', '([^']*)'\)", text)
    assert sorted(resolved) == [
        ("", f"http://hub.{rendered[0]['metadata']['name']}.svc:8081"),
        ("--EnclaveWorkspace.audit_url=", SETTINGS.audit_url),
    ]


def test_the_hub_resolves_a_service_name_when_it_loads_its_configuration() -> None:
    """``_resolved_url`` as rendered: the host becomes its address, the rest stays; a
    name that does not resolve stops the hub with one sentence naming it."""
    enclave = read_enclave_file(EXAMPLES[0])
    text = make_kube_hub_config(
        enclave=enclave,
        tier=load_catalog().get(enclave.tier),
        settings=SETTINGS,
        hub_config=HubConfig(),
    ).render()
    start = text.index("def _resolved_url")
    helper = text[start : text.index("\n\n\n", start)]
    scope: dict[str, Any] = {}
    exec(compile(helper, "jupyterhub_config.py", "exec"), scope)  # noqa: S102
    assert scope["_resolved_url"]("--x=", "http://localhost:8700") == "--x=http://127.0.0.1:8700"
    assert scope["_resolved_url"]("", "http://10.1.2.3:81/a") == "http://10.1.2.3:81/a"
    with pytest.raises(SystemExit, match=r"no-such-service\.invalid does not resolve"):
        scope["_resolved_url"]("", "http://no-such-service.invalid:8081")
