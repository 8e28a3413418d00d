"""What ``enclave render`` prints is what the controller creates, admitted under PSA restricted.

For each example (one per tier) the rendered objects are server-side applied as the
controller will apply them, owned by a real Enclave; then the hub's and the proxy's
pod templates, and the single-user pod the hub's KubeSpawner builds from the
rendered ``hub-config`` (kubespawner's own ``get_pod_manifest``), are created for
real in the enclave's namespace, where Pod Security ``restricted`` is enforced. The
same namespace refuses that pod with any one restricted field loosened, so the check
can fail. The controller, given the CLI's inputs, creates exactly what
``enclave render`` prints, the generated hub configuration included.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException as AsyncApiException
from kubernetes_asyncio.config import kube_config
from traitlets.config import Config
from traitlets.utils.importstring import import_item

from controller.cli import cli
from controller.kube import GROUP, VERSION, HubConfig, RenderSettings, load_enclave, render_enclave
from controller.kube._apply import apply_objects, sync_objects
from controller.kube._objects import namespace_name
from controller.kube._reconcile import reconcile_enclave
from controller.kube.cli import _load_inputs
from policies import load_catalog
from tests.assets.controller import EXAMPLES, example, load_document
from tests.harness.kube import ControlPlane
from tests.integration.controller.helpers import counted_writes, in_force, wait_for

pytestmark = pytest.mark.kube

SETTINGS = RenderSettings(api_server_cidrs=("10.0.0.1/32",))
#: An operator overlay that tightens one tier; workspaces read it from hub-config.
OVERLAY = yaml.safe_dump(
    {"tiers": {"tommo-strong": {"screen_output": {"budget_bytes": 4 << 20, "warn_bytes": 1 << 20}}}}
)
HUB_CONFIG = HubConfig(tier_overlay=OVERLAY)


@pytest.fixture
def owned_enclave(
    request: pytest.FixtureRequest, kube_api: Any, enclave_crd_installed: str
) -> Iterator[tuple[dict[str, Any], str]]:
    """The example's Enclave, created under a fresh name; deleted with its namespace after."""
    doc = yaml.safe_load(Path(request.param).read_text("utf-8"))
    doc["metadata"]["name"] = f"t{secrets.token_hex(3)}-{doc['spec']['tier']}"
    custom = client.CustomObjectsApi(kube_api)
    stored = custom.create_cluster_custom_object(GROUP, VERSION, "enclaves", doc)
    try:
        yield doc, stored["metadata"]["uid"]
    finally:
        core = client.CoreV1Api(kube_api)
        try:
            core.delete_namespace(f"enclave-{doc['metadata']['name']}")
        except client.ApiException as e:
            if e.status != 404:
                raise
        custom.delete_cluster_custom_object(GROUP, VERSION, "enclaves", doc["metadata"]["name"])


@pytest.fixture(scope="module")
def audit_service(kube_api: Any) -> Iterator[str]:
    """The audit intake's Service where the settings name it (``audit.enclave-system``),
    so that its name resolves to a ClusterIP as it does in a real cluster."""
    core = client.CoreV1Api(kube_api)
    namespace = "enclave-system"
    created = False
    try:
        core.create_namespace({"metadata": {"name": namespace}})
        created = True
    except client.ApiException as e:
        if e.status != 409:
            raise
    service = {
        "metadata": {"name": "audit"},
        "spec": {
            "selector": dict(SETTINGS.audit_pod_labels),
            "ports": [{"port": SETTINGS.audit_port, "protocol": "TCP"}],
        },
    }
    try:
        core.create_namespaced_service(namespace, service)
    except client.ApiException as e:
        if e.status != 409:
            raise
    try:
        yield core.read_namespaced_service("audit", namespace).spec.cluster_ip
    finally:
        if created:
            core.delete_namespace(namespace)


def resolver(kube_api: Any) -> Callable[[str, str], str]:
    """``_resolved_url`` as the hub's pod runs it, with the cluster's DNS answer for
    ``<service>.<namespace>.svc`` (the Service's ClusterIP) read from the API server:
    the test machine has no cluster DNS."""
    core = client.CoreV1Api(kube_api)

    def resolved_url(prefix: str, url: str) -> str:
        parts = urlsplit(url)
        service, namespace, suffix = (parts.hostname or "").split(".")
        assert suffix == "svc", url
        address = core.read_namespaced_service(service, namespace).spec.cluster_ip
        return prefix + parts._replace(netloc=f"{address}:{parts.port}").geturl()

    return resolved_url


def spawner_config(objects: list[dict[str, Any]], kube_api: Any) -> Config:
    """The spawner's traits in the rendered ``hub-config``, loaded as JupyterHub loads them.

    Only the lines that configure the spawner and where it says the hub is run: the
    others read the hub's secret files, which exist only in its pod
    (``_secret('/run/enclave/...')``)."""
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"]
    text = config_map["data"]["jupyterhub_config.py"]
    spawner_lines = (
        "c.JupyterHub.spawner_class ",
        "c.JupyterHub.hub_connect_url ",
        "c.Spawner.",
        "c.KubeSpawner.",
    )
    lines = [line for line in text.splitlines() if line.startswith(spawner_lines)]
    config = Config()
    scope = {"c": config, "_resolved_url": resolver(kube_api)}
    exec(compile("\n".join(lines), "jupyterhub_config.py", "exec"), scope)  # noqa: S102
    return config


def spawned(
    kube_api: Any, plane: ControlPlane, config: Config, *, user: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod and the home claim the hub's spawner makes for ``user``: the class the
    configuration names, kubespawner's ``get_pod_manifest`` and ``get_pvc_manifest``.
    The hub's URLs are what JupyterHub derives from ``hub_connect_url``."""
    spawner_class = import_item(config.JupyterHub.spawner_class)
    connect = config.JupyterHub.hub_connect_url
    hub = SimpleNamespace(
        public_host="",
        url=f"{connect}/hub/",
        base_url="/hub/",
        api_url=f"{connect}/hub/api",
    )
    member = SimpleNamespace(name=user, id=1, url=f"/user/{user}/", escaped_name=user)

    async def build() -> tuple[dict[str, Any], dict[str, Any]]:
        spawner = spawner_class(config=config, user=member, hub=hub)
        pod, claim = await spawner.get_pod_manifest(), spawner.get_pvc_manifest()
        async with ApiClient() as api:  # the models are kubernetes_asyncio's
            return api.sanitize_for_serialization(pod), api.sanitize_for_serialization(claim)

    with pytest.MonkeyPatch.context() as mp:
        # KubeSpawner loads a kubeconfig when it is made (in the hub: its pod's account)
        mp.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(plane.kubeconfig))
        return asyncio.run(build())


def create_as_the_hub(
    plane: ControlPlane, namespace: str, pod: dict[str, Any], claim: dict[str, Any] | None = None
) -> Any:
    """Create ``claim`` and ``pod`` with the client KubeSpawner sends them with
    (kubernetes_asyncio), so the API server sees the bodies the hub would send."""

    async def create() -> Any:
        configuration = Configuration()
        await kube_config.load_kube_config(
            config_file=str(plane.kubeconfig), client_configuration=configuration
        )
        async with ApiClient(configuration) as api:
            core = CoreV1Api(api)
            if claim is not None:
                await core.create_namespaced_persistent_volume_claim(namespace, claim)
            return await core.create_namespaced_pod(namespace, pod)

    return asyncio.run(create())


@pytest.mark.parametrize("owned_enclave", EXAMPLES, ids=[p.stem for p in EXAMPLES], indirect=True)
def test_rendered_objects_are_admitted_and_pods_pass_psa_restricted(
    kube_api: Any,
    kube_control_plane: ControlPlane,
    owned_enclave: tuple[dict[str, Any], str],
    audit_service: str,
) -> None:
    doc, uid = owned_enclave
    enclave = load_enclave(doc)
    tier = load_catalog().get(enclave.tier)
    objects = render_enclave(
        enclave=enclave, tier=tier, settings=SETTINGS, hub_config=HUB_CONFIG, owner_uid=uid
    )
    stored = apply_objects(api_client=kube_api, objects=objects)
    assert [(o["kind"], o["metadata"]["name"]) for o in stored] == [
        (o["kind"], o["metadata"]["name"]) for o in objects
    ]
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == uid for o in stored)

    # The Deployments' pods are created for real by the ReplicaSet controller, where PSA
    # restricted is enforced (a violation would leave the ReplicaSet with FailedCreate).
    ns = namespace_name(enclave)
    core = client.CoreV1Api(kube_api)
    for component in ("hub", "proxy"):
        selector = (
            f"app.kubernetes.io/instance={enclave.name},app.kubernetes.io/component={component}"
        )
        wait_for(
            f"the {component} pod",
            lambda selector=selector: bool(
                core.list_namespaced_pod(ns, label_selector=selector).items
            ),
        )
    # The single-user pod, as the hub's KubeSpawner builds it from the rendered config.
    pod_body, claim_body = spawned(
        kube_api,
        kube_control_plane,
        spawner_config(objects, kube_api),
        user=enclave.members[0].user,
    )
    pod = create_as_the_hub(kube_control_plane, ns, pod_body, claim_body)
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.service_account_name == "singleuser"
    assert pod.spec.security_context.run_as_user == SETTINGS.run_as_user
    assert all(
        m.read_only
        for m in pod.spec.containers[0].volume_mounts
        if m.mount_path.startswith("/data/")
    )
    assert pod.spec.node_selector == (
        {"enclave.dev/pool": enclave.name} if tier.compute.dedicated_nodes else None
    )
    # the single-user NetworkPolicy selects it (else it would be only default-denied)
    policy = client.NetworkingV1Api(kube_api).read_namespaced_network_policy("singleuser", ns)
    assert policy.spec.pod_selector.match_labels.items() <= pod.metadata.labels.items()
    # the workspace is started with the hardened server, its token file and the overlay
    args = pod.spec.containers[0].args
    assert "--EnclaveWorkspace.audit_token_file=/run/enclave/audit_token" in args
    assert "--EnclaveWorkspace.tier_overlay=/etc/enclave/tier-overlay.yaml" in args
    assert not [e for e in pod.spec.containers[0].env or [] if "TOKEN" in e.name and e.value]
    # it resolves no names (no DNS on any tier): the hub API and the audit intake it is
    # handed are the Services' ClusterIPs, as the hub resolved them
    hub_ip = core.read_namespaced_service("hub", ns).spec.cluster_ip
    env = {e.name: e.value for e in pod.spec.containers[0].env or []}
    assert env["JUPYTERHUB_API_URL"] == f"http://{hub_ip}:8081/hub/api"
    assert f"--EnclaveWorkspace.audit_url=http://{audit_service}:{SETTINGS.audit_port}" in args


@pytest.fixture(scope="module")
def restricted_namespace(
    kube_api: Any, kube_control_plane: ControlPlane, enclave_crd_installed: str, audit_service: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A rendered enclave's namespace, and the single-user pod its hub would create."""
    doc = load_document(example("tommo-strong"))
    doc["metadata"]["name"] = f"t{secrets.token_hex(3)}-psa"
    enclave = load_enclave(doc)
    tier = load_catalog().get(enclave.tier)
    objects = render_enclave(enclave=enclave, tier=tier, settings=SETTINGS, hub_config=HUB_CONFIG)
    apply_objects(api_client=kube_api, objects=objects)
    config = spawner_config(objects, kube_api)
    pod, _ = spawned(kube_api, kube_control_plane, config, user="x@y.example")
    ns = namespace_name(enclave)
    try:
        yield ns, pod
    finally:
        client.CoreV1Api(kube_api).delete_namespace(ns)


def _workspace(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    return container


#: One restricted field of the spawned pod loosened, named after what it would let in.
LOOSENED: dict[str, Callable[[dict[str, Any]], None]] = {
    "privilege_escalation": lambda pod: _workspace(pod)["securityContext"].update(
        allowPrivilegeEscalation=True
    ),
    "root_user": lambda pod: (
        pod["spec"]["securityContext"].update(runAsNonRoot=False, runAsUser=0),
        _workspace(pod)["securityContext"].update(runAsNonRoot=False, runAsUser=0),
    ),
    "raw_sockets_capability": lambda pod: _workspace(pod)["securityContext"].update(
        capabilities={"drop": ["ALL"], "add": ["NET_RAW"]}
    ),
    "capabilities_kept": lambda pod: _workspace(pod)["securityContext"].pop("capabilities"),
    "no_seccomp": lambda pod: (
        pod["spec"]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        _workspace(pod)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
    ),
    "privileged_secret_copier": lambda pod: pod["spec"]["initContainers"][0][
        "securityContext"
    ].update(privileged=True, allowPrivilegeEscalation=True),
    "node_disk_as_dataset": lambda pod: pod["spec"]["volumes"].append(
        {"name": "node", "hostPath": {"path": "/"}}
    ),
}


def test_the_spawned_pod_is_admitted_unchanged(
    kube_control_plane: ControlPlane, restricted_namespace: tuple[str, dict[str, Any]]
) -> None:
    ns, pod = restricted_namespace
    body = json.loads(json.dumps(pod))
    body["metadata"]["name"] = "jupyter-unchanged"
    assert create_as_the_hub(kube_control_plane, ns, body).metadata.name == "jupyter-unchanged"


@pytest.mark.parametrize("loosen", sorted(LOOSENED))
def test_a_spawned_pod_with_one_restricted_field_loosened_is_refused(
    kube_control_plane: ControlPlane, restricted_namespace: tuple[str, dict[str, Any]], loosen: str
) -> None:
    """The namespace really enforces restricted: the check above could not pass by accident."""
    ns, pod = restricted_namespace
    body = json.loads(json.dumps(pod))
    body["metadata"]["name"] = f"jupyter-{loosen.replace('_', '-')}"
    LOOSENED[loosen](body)
    with pytest.raises(AsyncApiException) as caught:
        create_as_the_hub(kube_control_plane, ns, body)
    assert caught.value.status == 403
    message = json.loads(caught.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message


def _differences(live: Any, wanted: Any, path: str = "") -> list[str]:
    """Where ``live`` lacks or differs from what ``wanted`` sets (server defaults and
    server-set metadata, which ``wanted`` does not set, are not compared)."""
    if isinstance(wanted, dict):
        if not isinstance(live, dict):
            return [f"{path}: {live!r}"]
        return [d for k, v in wanted.items() for d in _differences(live.get(k), v, f"{path}.{k}")]
    if isinstance(wanted, list):
        if not isinstance(live, list) or len(live) != len(wanted):
            return [f"{path}: {live!r} != {wanted!r}"]
        return [
            d
            for i, (lv, w) in enumerate(zip(live, wanted, strict=True))
            for d in _differences(lv, w, f"{path}[{i}]")
        ]
    return [] if live == wanted else [f"{path}: {live!r} != {wanted!r}"]


def test_the_controller_creates_exactly_what_render_prints(
    kube_api: Any, enclave_crd_installed: str, tmp_path: Path
) -> None:
    """The same inputs to ``enclave render`` and to the controller (settings, overlay):
    every object printed is in the cluster as printed, the hub's ConfigMap included."""
    name = f"t{secrets.token_hex(3)}-same"
    doc = in_force(load_document(example("tommo-strong")), name=name)
    (tmp_path / "enclave.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump({"api_server_cidrs": ["10.0.0.1/32"]}))
    (tmp_path / "overlay.yaml").write_text(OVERLAY)
    options = [
        "--settings",
        str(tmp_path / "settings.yaml"),
        "--overlay",
        str(tmp_path / "overlay.yaml"),
    ]
    result = CliRunner().invoke(cli, ["render", str(tmp_path / "enclave.yaml"), *options])
    assert result.exit_code == 0, result.output
    printed = list(yaml.safe_load_all(result.stdout))

    # the controller, with its inputs read as ``enclave controller run`` reads them
    inputs = _load_inputs(
        settings_file=tmp_path / "settings.yaml", overlay=tmp_path / "overlay.yaml"
    )
    custom = client.CustomObjectsApi(kube_api)
    stored = custom.create_cluster_custom_object(GROUP, VERSION, "enclaves", doc)
    dynamic = DynamicClient(kube_api)
    try:
        outcome = reconcile_enclave(
            api_client=kube_api,
            document=stored,
            catalog=inputs.catalog,
            settings=inputs.settings,
            hub_config=inputs.hub_config,
        )
        assert len(outcome.written) == len(printed)
        for obj in printed:
            meta = obj["metadata"]
            live = (
                dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                .get(name=meta["name"], namespace=meta.get("namespace"))
                .to_dict()
            )
            assert _differences(live, obj) == [], f"{obj['kind']} {meta['name']}"
        [config_map] = [o for o in printed if o["kind"] == "ConfigMap"]
        assert set(config_map["data"]) == {"jupyterhub_config.py", "tier-overlay.yaml"}
        assert config_map["data"]["tier-overlay.yaml"] == OVERLAY
    finally:
        try:
            client.CoreV1Api(kube_api).delete_namespace(f"enclave-{name}")
        finally:
            custom.delete_cluster_custom_object(GROUP, VERSION, "enclaves", name)


def test_a_settled_enclave_resyncs_with_zero_writes_and_drift_is_repaired(
    kube_control_plane: Any, enclave_crd_installed: str
) -> None:
    doc = load_document(EXAMPLES[0])
    doc["metadata"]["name"] = f"t{secrets.token_hex(3)}-sync"
    enclave = load_enclave(doc)
    objects = render_enclave(
        enclave=enclave,
        tier=load_catalog().get(enclave.tier),
        settings=SETTINGS,
        hub_config=HUB_CONFIG,
    )
    api_client = kube_control_plane.new_api_client()
    ns = namespace_name(enclave)
    try:
        first = sync_objects(api_client=api_client, objects=objects)
        assert len(first.written) == len(objects)
        with counted_writes(api_client) as writes:
            again = sync_objects(api_client=api_client, objects=objects)
        assert writes == []
        assert again.written == ()

        networking = client.NetworkingV1Api(api_client)
        networking.delete_namespaced_network_policy("default-deny", ns)
        networking.patch_namespaced_network_policy(
            "singleuser",
            ns,
            {"spec": {"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}},
        )
        repaired = sync_objects(api_client=api_client, objects=objects)
        assert repaired.written == (
            f"NetworkPolicy {ns}/default-deny",
            f"NetworkPolicy {ns}/singleuser",
        )
        live = networking.read_namespaced_network_policy("singleuser", ns)
        assert [r.to[0].ip_block for r in live.spec.egress] == [None, None]
    finally:
        client.CoreV1Api(api_client).delete_namespace(ns)
        api_client.close()


def test_a_changed_hub_config_changes_the_hub_pod_template_the_cluster_runs(
    kube_control_plane: Any, enclave_crd_installed: str
) -> None:
    """JupyterHub reads its configuration once: the overlay added to ``hub-config`` must
    reach the Deployment's pod template, or the running hub keeps the old one."""
    doc = load_document(EXAMPLES[0])
    doc["metadata"]["name"] = f"t{secrets.token_hex(3)}-roll"
    enclave = load_enclave(doc)
    tier = load_catalog().get(enclave.tier)
    api_client = kube_control_plane.new_api_client()
    ns = namespace_name(enclave)
    apps = client.AppsV1Api(api_client)

    def template_digest() -> str:
        template = apps.read_namespaced_deployment("hub", ns).spec.template
        digest: str = template.metadata.annotations["enclave.dev/hub-config-digest"]
        return digest

    def sync(hub_config: HubConfig) -> list[dict[str, Any]]:
        objects = render_enclave(
            enclave=enclave, tier=tier, settings=SETTINGS, hub_config=hub_config
        )
        sync_objects(api_client=api_client, objects=objects)
        return objects

    try:
        sync(HubConfig())
        before = template_digest()
        objects = sync(HUB_CONFIG)
        after = template_digest()
        assert before != after
        [deployment] = [
            o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "hub"
        ]
        assert (
            after
            == deployment["spec"]["template"]["metadata"]["annotations"][
                "enclave.dev/hub-config-digest"
            ]
        )
        # the Deployment controller sees a new template: a new ReplicaSet for the hub
        selector = f"app.kubernetes.io/instance={enclave.name},app.kubernetes.io/component=hub"
        wait_for(
            "the hub's second ReplicaSet",
            lambda: len(apps.list_namespaced_replica_set(ns, label_selector=selector).items) == 2,
        )
    finally:
        client.CoreV1Api(api_client).delete_namespace(ns)
        api_client.close()
