"""The RBAC in deploy/ is the least that works: what the operator needs is allowed, the rest is not.

Each check is a real SubjectAccessReview answered by the API server's RBAC authoriser for the
operator's ServiceAccount.
"""

from __future__ import annotations

import json

import pytest

from wmco_sandbox.controlplane import ControlPlane, project_root

pytestmark = pytest.mark.integration

SA = "system:serviceaccount:openshift-windows-machine-config-operator:windows-machine-config-operator"
OPERATOR_NS = "openshift-windows-machine-config-operator"
MAPI_NS = "openshift-machine-api"


@pytest.fixture(scope="module")
def applied(control_plane: ControlPlane) -> ControlPlane:
    deploy = project_root() / "deploy"
    for manifest in ("namespace.yaml", "rbac.yaml"):
        control_plane.kubectl("apply", "-f", str(deploy / manifest))
    return control_plane


def can_i(
    plane: ControlPlane,
    verb: str,
    resource: str,
    namespace: str = "",
    *,
    group: str = "",
    subresource: str = "",
    name: str = "",
) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": SA,
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{OPERATOR_NS}",
                "system:authenticated",
            ],
            "resourceAttributes": {
                "verb": verb,
                "group": group,
                "resource": resource,
                "subresource": subresource,
                "namespace": namespace,
                "name": name,
            },
        },
    }
    answer = json.loads(plane.kubectl("create", "-f", "-", "-o", "json", stdin=json.dumps(review)))
    return bool(answer["status"].get("allowed"))


CERTS = "certificates.k8s.io"
MACHINES = "machine.openshift.io"

Check = tuple[str, str, str, dict[str, str]]

ALLOWED: list[Check] = [
    ("patch", "nodes", "", {}),
    ("delete", "nodes", "", {}),
    ("list", "pods", "", {}),
    ("create", "pods", "default", {"subresource": "eviction"}),
    ("list", "certificatesigningrequests", "", {"group": CERTS}),
    ("update", "certificatesigningrequests", "", {"group": CERTS, "subresource": "approval"}),
    (
        "approve",
        "signers",
        "",
        {"group": CERTS, "name": "kubernetes.io/kube-apiserver-client-kubelet"},
    ),
    ("approve", "signers", "", {"group": CERTS, "name": "kubernetes.io/kubelet-serving"}),
    ("get", "secrets", OPERATOR_NS, {"name": "cloud-private-key"}),
    ("watch", "configmaps", OPERATOR_NS, {}),
    ("create", "secrets", MAPI_NS, {}),
    ("watch", "machines", MAPI_NS, {"group": MACHINES}),
    ("create", "secrets", "kube-system", {}),
    ("get", "configmaps", "kube-public", {"name": "cluster-info"}),
    ("update", "leases", OPERATOR_NS, {"group": "coordination.k8s.io"}),
    ("create", "events", "default", {}),
    ("patch", "leases", OPERATOR_NS, {"group": "coordination.k8s.io"}),
    ("watch", "namespaces", "", {}),
    ("delete", "secrets", MAPI_NS, {}),
]

FORBIDDEN: list[Check] = [
    ("get", "secrets", "default", {}),
    ("list", "secrets", "", {}),
    ("create", "secrets", OPERATOR_NS, {}),
    ("delete", "namespaces", "", {}),
    ("create", "pods", "default", {}),
    ("delete", "pods", "default", {}),
    ("create", "nodes", "", {}),
    ("update", "certificatesigningrequests", "", {"group": CERTS, "subresource": "status"}),
    ("approve", "signers", "", {"group": CERTS, "name": "kubernetes.io/kube-apiserver-client"}),
    ("delete", "machines", MAPI_NS, {"group": MACHINES}),
    ("create", "clusterrolebindings", "", {"group": "rbac.authorization.k8s.io"}),
    ("escalate", "clusterroles", "", {"group": "rbac.authorization.k8s.io"}),
    ("get", "configmaps", "kube-public", {"name": "other"}),
    ("update", "secrets", "kube-system", {}),
]


def _id(check: Check) -> str:
    verb, resource, namespace, extra = check
    return " ".join(
        filter(None, [verb, resource, extra.get("subresource"), extra.get("name"), namespace])
    )


@pytest.mark.parametrize("check", ALLOWED, ids=_id)
def test_operator_may(applied: ControlPlane, check: Check) -> None:
    verb, resource, namespace, extra = check
    assert can_i(applied, verb, resource, namespace, **extra), f"the operator needs: {_id(check)}"


@pytest.mark.parametrize("check", FORBIDDEN, ids=_id)
def test_operator_may_not(applied: ControlPlane, check: Check) -> None:
    verb, resource, namespace, extra = check
    assert not can_i(applied, verb, resource, namespace, **extra), f"must not: {_id(check)}"
