"""Admission, RBAC and controllers of the test control plane are the real ones.

Each test provokes the real component into a decision a mock could only imitate:
Pod Security admission, a CRD's CEL rule, a ValidatingAdmissionPolicy, the RBAC
authorizer, and the namespace and garbage-collector controllers.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.harness.kube_fixtures import ServiceAccountClient, wait_for_service_account

pytestmark = pytest.mark.kube


def _poll(what: str, condition: Callable[[], bool], *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)  # the poll interval; the deadline above bounds the wait


def _status(call: Callable[[], object]) -> int:
    """Run an API call; return 200 when it succeeds, else the HTTP status it failed with."""
    try:
        call()
    except client.ApiException as e:
        return int(e.status)
    return 200


def _message(error: client.ApiException) -> str:
    """The API server's own message from the Status object it answered with."""
    return str(json.loads(error.body)["message"])


def _privileged_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "registry.invalid/never-pulled:1",
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }


def test_pod_security_restricted_rejects_a_privileged_pod(kube_api: Any, kube_namespace: str):
    core = client.CoreV1Api(kube_api)
    # Without a Pod Security label a namespace admits the pod: the API server runs
    # with --allow-privileged, so the refusal below comes from PodSecurity.
    core.create_namespaced_pod(kube_namespace, _privileged_pod("allowed"))
    # The restricted namespace carries its label from creation: Pod Security reads
    # namespaces from an informer cache, which could still hold a relabelled
    # namespace's old labels for a moment.
    restricted = f"{kube_namespace[:50]}-restricted"
    core.create_namespace(
        {
            "metadata": {
                "name": restricted,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            }
        }
    )
    try:
        wait_for_service_account(kube_api, namespace=restricted)
        with pytest.raises(client.ApiException) as caught:
            core.create_namespaced_pod(restricted, _privileged_pod("refused"))
    finally:
        core.delete_namespace(restricted)
    assert caught.value.status == 403
    message = _message(caught.value)
    assert message.startswith(
        'pods "refused" is forbidden: violates PodSecurity "restricted:latest"'
    )
    assert 'privileged (container "main" must not set securityContext.privileged=true)' in message


def test_crd_cel_validation_rejects_a_bad_object(kube_api: Any, kube_namespace: str):
    group = f"t{secrets.token_hex(4)}.enclave.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.replicas <= self.maxReplicas",
                                            "message": "replicas must not exceed maxReplicas",
                                        }
                                    ],
                                    "properties": {
                                        "replicas": {"type": "integer"},
                                        "maxReplicas": {"type": "integer"},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    ext = client.ApiextensionsV1Api(kube_api)
    ext.create_custom_resource_definition(crd)
    try:

        def established() -> bool:
            conditions = ext.read_custom_resource_definition(crd["metadata"]["name"]).status
            return any(
                c.type == "Established" and c.status == "True" for c in conditions.conditions or []
            )

        _poll("the CRD to be established", established)
        custom = client.CustomObjectsApi(kube_api)

        def widget(name: str, replicas: int) -> dict[str, Any]:
            return {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": {"replicas": replicas, "maxReplicas": 3},
            }

        custom.create_namespaced_custom_object(
            group, "v1", kube_namespace, "widgets", widget("good", 3)
        )
        with pytest.raises(client.ApiException) as caught:
            custom.create_namespaced_custom_object(
                group, "v1", kube_namespace, "widgets", widget("bad", 4)
            )
        assert caught.value.status == 422
        assert _message(caught.value) == (
            f'Widget.{group} "bad" is invalid: spec: Invalid value: '
            "replicas must not exceed maxReplicas"
        )
    finally:
        ext.delete_custom_resource_definition(crd["metadata"]["name"])


def test_validating_admission_policy_rejects_an_object(kube_api: Any, kube_namespace: str):
    admission = client.AdmissionregistrationV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    policy_name = f"no-plaintext-{secrets.token_hex(4)}"
    core.patch_namespace(kube_namespace, {"metadata": {"labels": {"policy-test": policy_name}}})
    admission.create_validating_admission_policy(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy_name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["configmaps"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "!has(object.data) || !('password' in object.data)",
                        "message": "configmaps must not hold a password",
                    }
                ],
            },
        }
    )
    try:
        admission.create_validating_admission_policy_binding(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": policy_name},
                "spec": {
                    "policyName": policy_name,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {"matchLabels": {"policy-test": policy_name}}
                    },
                },
            }
        )
        bad = {"metadata": {"name": "creds"}, "data": {"password": "hunter2"}}
        refusal: list[client.ApiException] = []

        # The API server picks up new policies from an informer: retry until it denies.
        def denied() -> bool:
            try:
                core.create_namespaced_config_map(kube_namespace, bad)
            except client.ApiException as e:
                refusal.append(e)
                return True
            core.delete_namespaced_config_map("creds", kube_namespace)
            return False

        _poll("the ValidatingAdmissionPolicy to take effect", denied)
        assert refusal[0].status == 422
        assert (
            f"ValidatingAdmissionPolicy '{policy_name}' with binding '{policy_name}' "
            "denied request: configmaps must not hold a password"
        ) in _message(refusal[0])
        core.create_namespaced_config_map(
            kube_namespace, {"metadata": {"name": "fine"}, "data": {"colour": "blue"}}
        )
    finally:
        admission.delete_validating_admission_policy_binding(policy_name)
        admission.delete_validating_admission_policy(policy_name)


def test_service_account_without_permission_gets_403(
    kube_api: Any,
    kube_namespace: str,
    as_service_account: Callable[..., ServiceAccountClient],
):
    reader = as_service_account("reader")
    core_as_reader = client.CoreV1Api(reader.api_client)
    with pytest.raises(client.ApiException) as caught:
        core_as_reader.list_namespaced_config_map(kube_namespace)
    assert caught.value.status == 403
    assert (
        f'User "system:serviceaccount:{kube_namespace}:reader" cannot list resource '
        f'"configmaps" in API group "" in the namespace "{kube_namespace}"'
    ) in _message(caught.value)

    rbac = client.RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role(
        kube_namespace,
        {
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        kube_namespace,
        {
            "metadata": {"name": "reader-reads-configmaps"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "configmap-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": kube_namespace}],
        },
    )
    _poll(
        "the RoleBinding to grant list on configmaps",
        lambda: _status(lambda: core_as_reader.list_namespaced_config_map(kube_namespace)) == 200,
    )
    # The grant is exactly what the Role says: secrets stay forbidden.
    assert _status(lambda: core_as_reader.list_namespaced_secret(kube_namespace)) == 403


def test_deleting_a_namespace_completes(kube_api: Any):
    core = client.CoreV1Api(kube_api)
    name = f"t-delete-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "content"}, "data": {"a": "b"}})
    core.delete_namespace(name)
    # The namespace lingers as Terminating until the namespace controller has emptied
    # it and removed its "kubernetes" finalizer.
    _poll(
        "the namespace controller to finish deleting the namespace",
        lambda: _status(lambda: core.read_namespace(name)) == 404,
    )
    assert _status(lambda: core.read_namespaced_config_map("content", name)) == 404


def test_garbage_collector_deletes_dependents(kube_api: Any, kube_namespace: str):
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(
        kube_namespace, {"metadata": {"name": "owner"}, "data": {}}
    )
    core.create_namespaced_config_map(
        kube_namespace,
        {
            "metadata": {
                "name": "dependent",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                    }
                ],
            },
            "data": {},
        },
    )
    core.delete_namespaced_config_map("owner", kube_namespace)
    _poll(
        "the garbage collector to delete the dependent",
        lambda: (
            _status(lambda: core.read_namespaced_config_map("dependent", kube_namespace)) == 404
        ),
    )


def test_server_side_apply_reports_a_field_manager_conflict(kube_api: Any, kube_namespace: str):
    core = client.CoreV1Api(kube_api)
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "shared", "namespace": kube_namespace},
        "data": {"owner": "alice"},
    }

    def apply(manager: str, owner: str, *, force: bool = False) -> Any:
        return core.patch_namespaced_config_map(
            "shared",
            kube_namespace,
            {**body, "data": {"owner": owner}},
            field_manager=manager,
            force=force,
            _content_type="application/apply-patch+yaml",
        )

    apply("alice", "alice")
    with pytest.raises(client.ApiException) as caught:
        apply("bob", "bob")
    assert caught.value.status == 409
    assert (
        _message(caught.value) == 'Apply failed with 1 conflict: conflict with "alice": .data.owner'
    )
    taken = apply("bob", "bob", force=True)
    assert taken.data == {"owner": "bob"}
    assert [m.manager for m in taken.metadata.managed_fields] == ["bob"]
