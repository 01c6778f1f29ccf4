"""The RBAC in deploy/ is the least that works: what the operator needs is allowed, the rest is not.

Each check is a real SubjectAccessReview answered by the API server's RBAC authoriser for the
operator's ServiceAccount. The grants of issue 8 (the network configuration, the kubelet client CA
ConfigMaps) are also exercised as the requests the operator really makes (get, and the
informer's list and watch with a ``metadata.name`` field selector), sent with the
ServiceAccount's own token.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from wmco_sandbox.controlplane import ControlPlane, kubectl_path, project_root

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
OPERATOR_API = "operator.openshift.io"
KAS_OPERATOR_NS = "openshift-kube-apiserver-operator"
KUBELET_CLIENT_CA = "kube-apiserver-to-kubelet-client-ca"
EXTENSION_AUTH = "extension-apiserver-authentication"

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
    # Issue 8: network profile resolution and the kubelet client CA (read and watched).
    ("get", "networks", "", {"group": OPERATOR_API, "name": "cluster"}),
    ("get", "configmaps", KAS_OPERATOR_NS, {"name": KUBELET_CLIENT_CA}),
    ("list", "configmaps", KAS_OPERATOR_NS, {"name": KUBELET_CLIENT_CA}),
    ("watch", "configmaps", KAS_OPERATOR_NS, {"name": KUBELET_CLIENT_CA}),
    ("get", "configmaps", "kube-system", {"name": EXTENSION_AUTH}),
    ("list", "configmaps", "kube-system", {"name": EXTENSION_AUTH}),
    ("watch", "configmaps", "kube-system", {"name": EXTENSION_AUTH}),
    # ...and the Event about a bad bundle, next to its ConfigMap.
    ("create", "events", KAS_OPERATOR_NS, {}),
    ("create", "events", "kube-system", {}),
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
    # Issue 8 neighbours: other network objects, writes, other ConfigMaps in those namespaces.
    ("get", "networks", "", {"group": OPERATOR_API, "name": "other"}),
    ("list", "networks", "", {"group": OPERATOR_API}),
    ("patch", "networks", "", {"group": OPERATOR_API, "name": "cluster"}),
    ("get", "networks", "", {"group": "config.openshift.io", "name": "cluster"}),
    ("get", "configmaps", KAS_OPERATOR_NS, {"name": "config"}),
    ("list", "configmaps", KAS_OPERATOR_NS, {}),
    ("watch", "configmaps", KAS_OPERATOR_NS, {}),
    ("update", "configmaps", KAS_OPERATOR_NS, {"name": KUBELET_CLIENT_CA}),
    ("patch", "configmaps", KAS_OPERATOR_NS, {"name": KUBELET_CLIENT_CA}),
    ("delete", "configmaps", KAS_OPERATOR_NS, {"name": KUBELET_CLIENT_CA}),
    ("create", "configmaps", KAS_OPERATOR_NS, {}),
    ("get", "configmaps", "kube-system", {"name": "kubeadm-config"}),
    ("get", "configmaps", "kube-system", {"name": "kube-proxy"}),
    ("list", "configmaps", "kube-system", {}),
    ("watch", "configmaps", "kube-system", {}),
    ("update", "configmaps", "kube-system", {"name": EXTENSION_AUTH}),
    ("patch", "configmaps", "kube-system", {"name": EXTENSION_AUTH}),
    ("create", "configmaps", "kube-system", {}),
    ("get", "secrets", KAS_OPERATOR_NS, {}),
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


# --- The new grants, exercised as the ServiceAccount ----------------------------------------------


@pytest.fixture(scope="module")
def as_operator(applied: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig holding the operator ServiceAccount's own token (what the sandbox runs with)."""
    token = applied.kubectl(
        "create", "token", "windows-machine-config-operator", "-n", OPERATOR_NS
    ).strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "plane",
                "cluster": {
                    "server": applied.server,
                    "certificate-authority-data": base64.b64encode(applied.ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "plane", "user": "operator"}}],
        "current-context": "operator",
    }
    path = tmp_path_factory.mktemp("rbac") / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def openshift_ca(applied: ControlPlane) -> Iterator[None]:
    """OpenShift's signer-bundle ConfigMap and a neighbour, in a namespace made for the test."""
    applied.kubectl("create", "namespace", KAS_OPERATOR_NS, check=False)
    for name in (KUBELET_CLIENT_CA, "neighbour"):
        applied.kubectl(
            "create", "configmap", name, "-n", KAS_OPERATOR_NS, "--from-literal=ca-bundle.crt=x"
        )
    try:
        yield
    finally:
        applied.kubectl("delete", "namespace", KAS_OPERATOR_NS, "--wait=false", check=False)


def raw(kubeconfig: Path, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kubectl_path()), f"--kubeconfig={kubeconfig}", "get", "--raw", path],
        capture_output=True,
        text=True,
        timeout=60,
    )


def by_name(namespace: str, name: str, *, watch: bool = False) -> str:
    query = {"fieldSelector": f"metadata.name={name}"}
    if watch:
        query |= {"watch": "true", "timeoutSeconds": "1"}
    return f"/api/v1/namespaces/{namespace}/configmaps?{urllib.parse.urlencode(query)}"


@pytest.mark.parametrize(
    ("namespace", "name"), [("kube-system", EXTENSION_AUTH), (KAS_OPERATOR_NS, KUBELET_CLIENT_CA)]
)
def test_the_operator_reads_and_watches_its_client_ca_configmap(
    as_operator: Path, openshift_ca: None, namespace: str, name: str
) -> None:
    got = raw(as_operator, f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["metadata"]["name"] == name
    listed = raw(as_operator, by_name(namespace, name))
    assert listed.returncode == 0, listed.stderr
    assert [item["metadata"]["name"] for item in json.loads(listed.stdout)["items"]] == [name]
    watched = raw(as_operator, by_name(namespace, name, watch=True))
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout.splitlines()[0])["object"]["metadata"]["name"] == name


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/namespaces/{KAS_OPERATOR_NS}/configmaps/neighbour",
        by_name(KAS_OPERATOR_NS, "neighbour"),
        f"/api/v1/namespaces/{KAS_OPERATOR_NS}/configmaps",
        "/api/v1/namespaces/kube-system/configmaps/kubeadm-config",
        "/api/v1/namespaces/kube-system/configmaps",
    ],
)
def test_neighbouring_configmaps_stay_forbidden(
    as_operator: Path, openshift_ca: None, path: str
) -> None:
    answer = raw(as_operator, path)
    assert answer.returncode != 0
    assert "Forbidden" in answer.stderr or "forbidden" in answer.stderr, answer.stderr


def test_reading_the_network_configuration_is_allowed_and_absent_here(as_operator: Path) -> None:
    # Plain Kubernetes has no such CRD: the allowed request answers 404 (not 403), which the
    # operator reads as "resolve auto to hostprocess".
    answer = raw(as_operator, "/apis/operator.openshift.io/v1/networks/cluster")
    assert answer.returncode != 0
    assert "NotFound" in answer.stderr or "not found" in answer.stderr.lower(), answer.stderr
    assert "forbidden" not in answer.stderr.lower()


# --- Issue 10 (mon): the monitoring objects in the operator's namespace --------------------------

MONITORING = "monitoring.coreos.com"
DISCOVERY = "discovery.k8s.io"
EXPORTER = "windows-exporter"

MONITORING_ALLOWED: list[Check] = [
    ("update", "secrets", OPERATOR_NS, {"name": "windows-exporter-ca"}),
    ("get", "services", OPERATOR_NS, {"name": EXPORTER}),
    ("list", "services", OPERATOR_NS, {}),
    ("watch", "services", OPERATOR_NS, {}),
    ("create", "services", OPERATOR_NS, {}),
    ("update", "services", OPERATOR_NS, {"name": EXPORTER}),
    ("delete", "services", OPERATOR_NS, {"name": EXPORTER}),
    ("list", "endpointslices", OPERATOR_NS, {"group": DISCOVERY}),
    ("watch", "endpointslices", OPERATOR_NS, {"group": DISCOVERY}),
    ("create", "endpointslices", OPERATOR_NS, {"group": DISCOVERY}),
    ("update", "endpointslices", OPERATOR_NS, {"group": DISCOVERY, "name": EXPORTER}),
    ("list", "servicemonitors", OPERATOR_NS, {"group": MONITORING}),
    ("watch", "servicemonitors", OPERATOR_NS, {"group": MONITORING}),
    ("create", "servicemonitors", OPERATOR_NS, {"group": MONITORING}),
    ("update", "servicemonitors", OPERATOR_NS, {"group": MONITORING, "name": EXPORTER}),
]

MONITORING_FORBIDDEN: list[Check] = [
    # Creating Secrets stays forbidden (a service-account-token Secret would mint tokens).
    ("create", "secrets", OPERATOR_NS, {}),
    ("delete", "secrets", OPERATOR_NS, {"name": "windows-exporter-ca"}),
    ("update", "secrets", OPERATOR_NS, {"name": "cloud-private-key"}),
    ("patch", "secrets", OPERATOR_NS, {"name": "windows-exporter-ca"}),
    ("update", "services", OPERATOR_NS, {"name": "other"}),
    ("delete", "services", OPERATOR_NS, {"name": "other"}),
    ("create", "services", "default", {}),
    ("update", "endpointslices", OPERATOR_NS, {"group": DISCOVERY, "name": "other"}),
    ("delete", "endpointslices", OPERATOR_NS, {"group": DISCOVERY, "name": EXPORTER}),
    ("create", "endpointslices", "default", {"group": DISCOVERY}),
    ("update", "servicemonitors", OPERATOR_NS, {"group": MONITORING, "name": "other"}),
    ("delete", "servicemonitors", OPERATOR_NS, {"group": MONITORING, "name": EXPORTER}),
    ("create", "servicemonitors", "default", {"group": MONITORING}),
    ("create", "prometheusrules", OPERATOR_NS, {"group": MONITORING}),
    ("create", "endpoints", OPERATOR_NS, {}),
]


@pytest.mark.parametrize("check", MONITORING_ALLOWED, ids=_id)
def test_operator_may_keep_its_monitoring_objects(applied: ControlPlane, check: Check) -> None:
    verb, resource, namespace, extra = check
    assert can_i(applied, verb, resource, namespace, **extra), f"the operator needs: {_id(check)}"


@pytest.mark.parametrize("check", MONITORING_FORBIDDEN, ids=_id)
def test_operator_may_not_touch_other_monitoring_objects(
    applied: ControlPlane, check: Check
) -> None:
    verb, resource, namespace, extra = check
    assert not can_i(applied, verb, resource, namespace, **extra), f"must not: {_id(check)}"
