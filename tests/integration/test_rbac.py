"""The RBAC of deploy/ grants only what the operator uses, on each overlay.

Each check is a real SubjectAccessReview answered by the API server's RBAC authoriser for the
operator's ServiceAccount, against the manifests as users get them (``kubectl kustomize`` of
``deploy/overlays/openshift`` and ``deploy/overlays/kubernetes``, applied with server-side apply).
``ALLOWED`` is every request the operator makes (verb, resource, namespace, and the name where it
uses one); ``FORBIDDEN`` holds the grants the old ``deploy/rbac.yaml`` gave or that would be one
step away: another Secret of openshift-machine-api, any kube-system Secret, deleting Namespaces,
approving CSRs of other signers, escalating or binding RBAC, creating pods, and so on. The grants
that only name-restricted rules allow are also exercised as the ServiceAccount itself (a get and
the informer's list and watch with a ``metadata.name`` field selector), with its own token.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client, KubeConfig
from lightkube.resources.authorization_v1 import SubjectAccessReview

from wmco import names
from wmco_sandbox import deploy
from wmco_sandbox.controlplane import ControlPlane, kubectl_path

pytestmark = pytest.mark.integration

OP = names.OPERATOR_NAMESPACE
BS = names.BOOTSTRAP_NAMESPACE
MAPI = names.MACHINE_API_NAMESPACE
SA = names.service_account_user(OP, deploy.OPERATOR_SERVICE_ACCOUNT)
SA_GROUPS = ["system:serviceaccounts", names.service_accounts_group(OP), "system:authenticated"]
HOST_ACCOUNT = names.service_account_user(BS, "windows-host-0123456789abcdef")
HOST_GROUPS = ["system:serviceaccounts", names.service_accounts_group(BS), "system:authenticated"]

CERTS = "certificates.k8s.io"
RBAC = "rbac.authorization.k8s.io"
MACHINES = "machine.openshift.io"
OPERATOR_API = "operator.openshift.io"
LEASES = "coordination.k8s.io"
KAS_NS = names.OPENSHIFT_KUBE_APISERVER_OPERATOR_NAMESPACE
KUBELET_CLIENT_CA = names.KUBELET_CLIENT_CA_CONFIGMAP
EXTENSION_AUTH = names.EXTENSION_APISERVER_AUTHENTICATION_CONFIGMAP
CLIENT_SIGNER = names.CSR_SIGNER_KUBELET_CLIENT
SERVING_SIGNER = names.CSR_SIGNER_KUBELET_SERVING
LOCK = names.LEADER_ELECTION_LEASE
USER_DATA = names.USER_DATA_SECRET

# (verb, resource, namespace, {"group", "subresource", "name"})
Check = tuple[str, str, str, dict[str, str]]


def many(verbs: str, resource: str, namespace: str = "", **extra: str) -> list[Check]:
    return [(verb, resource, namespace, dict(extra)) for verb in verbs.split()]


# --- What the operator does, on every cluster ---------------------------------------------------

COMMON_ALLOWED: list[Check] = [
    *many("get list watch patch delete", "nodes"),
    ("list", "pods", "", {}),
    ("create", "pods", "default", {"subresource": "eviction"}),
    ("create", "pods", "some-app", {"subresource": "eviction"}),
    *many("get list watch", "certificatesigningrequests", group=CERTS),
    ("patch", "certificatesigningrequests", "", {"group": CERTS, "subresource": "approval"}),
    ("approve", "signers", "", {"group": CERTS, "name": CLIENT_SIGNER}),
    ("approve", "signers", "", {"group": CERTS, "name": SERVING_SIGNER}),
    *many("get list watch", "secrets", OP, name=names.PRIVATE_KEY_SECRET),
    *many("get list watch create", "configmaps", OP),
    ("get", "configmaps", OP, {"name": "kube-root-ca.crt"}),
    ("patch", "configmaps", OP, {"name": names.SSH_HOST_KEYS_CONFIGMAP}),
    *many("get patch", "leases", OP, group=LEASES, name=LOCK),
    ("create", "leases", OP, {"group": LEASES}),
    *many("create patch", "events", "default"),
    *many("create patch", "events", OP),
    ("get", "configmaps", names.KUBE_PUBLIC_NAMESPACE, {"name": names.CLUSTER_INFO_CONFIGMAP}),
    *many("get list watch", "namespaces", name=OP),
    # Per-host bootstrap credentials.
    *many("get list watch create patch delete", "serviceaccounts", BS),
    ("create", "serviceaccounts", BS, {"subresource": "token", "name": "windows-host-0123"}),
]

OPENSHIFT_ALLOWED: list[Check] = [
    *many("list watch", "machines", MAPI, group=MACHINES),
    *many("get list watch update delete", "secrets", MAPI, name=USER_DATA),
    ("create", "secrets", MAPI, {}),
    *many("create patch", "events", MAPI),
    *many("get list watch", "namespaces", name=MAPI),
    ("get", "networks", "", {"group": OPERATOR_API, "name": "cluster"}),
    *many("get list watch", "configmaps", KAS_NS, name=KUBELET_CLIENT_CA),
    *many("create patch", "events", KAS_NS),
]

KUBERNETES_ALLOWED: list[Check] = [
    *many("get list watch update delete", "secrets", OP, name=USER_DATA),
    ("create", "secrets", OP, {}),
    *many("get list watch", "configmaps", "kube-system", name=EXTENSION_AUTH),
    *many("create patch", "events", "kube-system"),
]

# --- What it may not do ---------------------------------------------------------------------------

COMMON_FORBIDDEN: list[Check] = [
    # Secrets: the cloud credentials next to the user data, kube-system, everything else.
    *many("get update patch delete", "secrets", MAPI, name="aws-cloud-credentials"),
    *many("list watch", "secrets", MAPI),
    ("patch", "secrets", MAPI, {"name": USER_DATA}),
    *many("get list watch create update delete", "secrets", "kube-system"),
    ("get", "secrets", "kube-system", {"name": "bootstrap-token-abcdef"}),
    ("get", "secrets", OP, {"name": "some-other-secret"}),
    *many("list watch", "secrets", OP),
    *many("update patch delete", "secrets", OP, name=names.PRIVATE_KEY_SECRET),
    ("list", "secrets", "", {}),
    ("get", "secrets", BS, {}),
    ("get", "secrets", "default", {}),
    # Namespaces.
    *many("create delete", "namespaces"),
    ("delete", "namespaces", "", {"name": "kube-system"}),
    ("delete", "namespaces", "", {"name": OP}),
    ("get", "namespaces", "", {"name": "kube-system"}),
    ("list", "namespaces", "", {}),
    # Pods: evicted, never made, changed or read one by one.
    *many("create delete get", "pods", "default"),
    ("create", "pods", OP, {}),
    ("create", "pods", BS, {}),
    ("create", "pods", "default", {"subresource": "exec"}),
    ("create", "nodes", "", {}),
    # CSRs: only the kubelet signers, only through the approval subresource.
    ("approve", "signers", "", {"group": CERTS, "name": "kubernetes.io/kube-apiserver-client"}),
    ("approve", "signers", "", {"group": CERTS, "name": "kubernetes.io/legacy-unknown"}),
    ("approve", "signers", "", {"group": CERTS, "name": "example.com/anything"}),
    ("sign", "signers", "", {"group": CERTS, "name": CLIENT_SIGNER}),
    ("update", "certificatesigningrequests", "", {"group": CERTS, "subresource": "status"}),
    *many("create delete", "certificatesigningrequests", group=CERTS),
    # RBAC: no escalation, no binding, no roles of its own making (the bootstrap binding is
    # static, in deploy/).
    ("escalate", "clusterroles", "", {"group": RBAC}),
    ("escalate", "roles", BS, {"group": RBAC}),
    ("bind", "clusterroles", "", {"group": RBAC, "name": names.NODE_BOOTSTRAPPER_CLUSTER_ROLE}),
    ("bind", "clusterroles", "", {"group": RBAC, "name": "cluster-admin"}),
    *many("create update patch delete", "clusterrolebindings", group=RBAC),
    *many("create update", "clusterroles", group=RBAC),
    *many("create update", "rolebindings", BS, group=RBAC),
    ("create", "rolebindings", OP, {"group": RBAC}),
    ("create", "roles", BS, {"group": RBAC}),
    # ServiceAccounts and tokens: only the bootstrap namespace's.
    *many("create delete", "serviceaccounts", OP),
    *many("create delete", "serviceaccounts", "kube-system"),
    (
        "create",
        "serviceaccounts",
        OP,
        {"subresource": "token", "name": "windows-machine-config-operator"},
    ),
    ("create", "serviceaccounts", "kube-system", {"subresource": "token", "name": "default"}),
    ("impersonate", "serviceaccounts", BS, {}),
    ("impersonate", "users", "", {}),
    # Machines and MachineSets: not made, changed or deleted; MachineSets not even read.
    *many("create patch delete", "machines", MAPI, group=MACHINES),
    *many("get list watch", "machinesets", MAPI, group=MACHINES),
    # Events only where it writes them.
    ("create", "events", "kube-node-lease", {}),
    ("create", "events", "some-app", {}),
    ("delete", "events", "default", {}),
    # ConfigMaps: windows-instances is yours; neighbours elsewhere stay closed.
    *many("update patch delete", "configmaps", OP, name=names.INSTANCES_CONFIGMAP),
    ("get", "configmaps", "kube-public", {"name": "other"}),
    ("get", "configmaps", "default", {"name": KUBELET_CLIENT_CA}),
    ("get", "configmaps", "kube-system", {"name": "kubeadm-config"}),
    *many("list watch", "configmaps", "kube-system"),
    *many("get patch", "leases", OP, group=LEASES, name="other-lock"),
    ("update", "leases", OP, {"group": LEASES, "name": LOCK}),
    ("get", "leases", "kube-node-lease", {"group": LEASES}),
]

OPENSHIFT_FORBIDDEN: list[Check] = [
    ("get", "networks", "", {"group": OPERATOR_API, "name": "other"}),
    ("list", "networks", "", {"group": OPERATOR_API}),
    ("patch", "networks", "", {"group": OPERATOR_API, "name": "cluster"}),
    ("get", "networks", "", {"group": "config.openshift.io", "name": "cluster"}),
    ("get", "configmaps", KAS_NS, {"name": "config"}),
    *many("list watch", "configmaps", KAS_NS),
    *many("update patch delete", "configmaps", KAS_NS, name=KUBELET_CLIENT_CA),
    ("create", "configmaps", KAS_NS, {}),
    ("get", "secrets", KAS_NS, {}),
    # The kube-system source is not read on OpenShift.
    ("get", "configmaps", "kube-system", {"name": EXTENSION_AUTH}),
    ("get", "secrets", OP, {"name": USER_DATA}),
    ("create", "secrets", OP, {}),
]

KUBERNETES_FORBIDDEN: list[Check] = [
    # No Machine API, no OpenShift objects.
    *many("list watch", "machines", MAPI, group=MACHINES),
    *many("get create", "secrets", MAPI, name=USER_DATA),
    ("create", "secrets", MAPI, {}),
    ("get", "networks", "", {"group": OPERATOR_API, "name": "cluster"}),
    ("get", "configmaps", KAS_NS, {"name": KUBELET_CLIENT_CA}),
    ("get", "namespaces", "", {"name": MAPI}),
    *many("update patch delete", "configmaps", "kube-system", name=EXTENSION_AUTH),
    ("create", "configmaps", "kube-system", {}),
]

ALLOWED = {
    deploy.OPENSHIFT: COMMON_ALLOWED + OPENSHIFT_ALLOWED,
    deploy.KUBERNETES: COMMON_ALLOWED + KUBERNETES_ALLOWED,
}
FORBIDDEN = {
    deploy.OPENSHIFT: COMMON_FORBIDDEN + OPENSHIFT_FORBIDDEN,
    deploy.KUBERNETES: COMMON_FORBIDDEN + KUBERNETES_FORBIDDEN,
}

CLUSTER_NAMESPACES = {deploy.OPENSHIFT: (MAPI, KAS_NS), deploy.KUBERNETES: ()}
"""Namespaces the cluster itself has (OpenShift's), made before the operator is installed."""


@pytest.fixture(scope="module", params=deploy.OVERLAYS)
def installed(
    request: pytest.FixtureRequest, control_plane: ControlPlane
) -> Iterator[tuple[str, ControlPlane]]:
    """One overlay built and applied; removed again afterwards (the next one starts clean)."""
    overlay: str = request.param
    for namespace in CLUSTER_NAMESPACES[overlay]:
        control_plane.kubectl("create", "namespace", namespace, check=False)
    manifests = deploy.without(deploy.build(overlay), ("Deployment", "Service"))
    deploy.apply(control_plane.kubeconfig, manifests)
    try:
        yield overlay, control_plane
    finally:
        deploy.delete(control_plane.kubeconfig, manifests)


@pytest.fixture(scope="module")
def admin(control_plane: ControlPlane) -> Iterator[Client]:
    client = Client(config=KubeConfig.from_file(control_plane.kubeconfig))
    try:
        yield client
    finally:
        client.close()


def allowed(client: Client, check: Check, *, user: str = SA, groups: list[str] = SA_GROUPS) -> bool:
    verb, resource, namespace, extra = check
    review = SubjectAccessReview.from_dict(
        {
            "spec": {
                "user": user,
                "groups": groups,
                "resourceAttributes": {
                    "verb": verb,
                    "group": extra.get("group", ""),
                    "resource": resource,
                    "subresource": extra.get("subresource", ""),
                    "namespace": namespace,
                    "name": extra.get("name", ""),
                },
            }
        }
    )
    answer = client.create(review)
    return bool(answer.status and answer.status.allowed)


def describe(check: Check) -> str:
    verb, resource, namespace, extra = check
    parts = [verb, resource, extra.get("subresource"), extra.get("name"), namespace or "(cluster)"]
    return " ".join(filter(None, parts))


def test_every_request_the_operator_makes_is_allowed(
    installed: tuple[str, ControlPlane], admin: Client
) -> None:
    overlay, _ = installed
    refused = [describe(c) for c in ALLOWED[overlay] if not allowed(admin, c)]
    assert refused == [], f"{overlay}: the operator needs these"


def test_everything_else_is_refused(installed: tuple[str, ControlPlane], admin: Client) -> None:
    overlay, _ = installed
    granted = [describe(c) for c in FORBIDDEN[overlay] if allowed(admin, c)]
    assert granted == [], f"{overlay}: over-granted"


def test_the_lists_are_not_vacuous(installed: tuple[str, ControlPlane], admin: Client) -> None:
    # The same review for another user is refused: the answers above are about the operator.
    overlay, _ = installed
    stranger = names.service_account_user("default", "default")
    sample = ALLOWED[overlay][:10]
    assert not any(
        allowed(admin, c, user=stranger, groups=["system:authenticated"]) for c in sample
    )


def test_bootstrap_accounts_may_only_bootstrap_a_kubelet(
    installed: tuple[str, ControlPlane], admin: Client
) -> None:
    """What a token in a host's bootstrap kubeconfig can do: create and read CSRs, nothing else."""

    def may(check: Check) -> bool:
        return allowed(admin, check, user=HOST_ACCOUNT, groups=HOST_GROUPS)

    for check in many("create get list watch", "certificatesigningrequests", group=CERTS):
        assert may(check), describe(check)
    for check in [
        ("approve", "signers", "", {"group": CERTS, "name": CLIENT_SIGNER}),
        ("patch", "certificatesigningrequests", "", {"group": CERTS, "subresource": "approval"}),
        ("get", "secrets", BS, {}),
        ("create", "serviceaccounts", BS, {"subresource": "token"}),
        ("get", "nodes", "", {}),
        ("create", "pods", BS, {}),
    ]:
        assert not may(check), describe(check)


# --- The name-restricted grants, exercised as the ServiceAccount --------------------------------


@pytest.fixture(scope="module")
def as_operator(
    installed: tuple[str, ControlPlane], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig holding the operator ServiceAccount's own token (what the sandbox runs with)."""
    _, plane = installed
    path = tmp_path_factory.mktemp("rbac") / "operator.kubeconfig"
    return deploy.token_kubeconfig(plane, OP, path, duration="1h")


@pytest.fixture(scope="module")
def ca_configmaps(installed: tuple[str, ControlPlane]) -> Iterator[str]:
    """The overlay's CA source ConfigMap and a neighbour, made for the test; yields its namespace."""
    overlay, plane = installed
    namespace, name = (
        (KAS_NS, KUBELET_CLIENT_CA)
        if overlay == deploy.OPENSHIFT
        else ("kube-system", EXTENSION_AUTH)
    )
    made = ["neighbour"]
    if overlay == deploy.OPENSHIFT:
        made.append(name)  # the control plane publishes extension-apiserver-authentication itself
    for configmap in made:
        plane.kubectl(
            "create", "configmap", configmap, "-n", namespace, "--from-literal=k=v", check=False
        )
    try:
        yield namespace
    finally:
        for configmap in made:
            with contextlib.suppress(Exception):
                plane.kubectl(
                    "delete", "configmap", configmap, "-n", namespace, "--ignore-not-found"
                )


def raw(kubeconfig: Path, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kubectl_path()), f"--kubeconfig={kubeconfig}", "get", "--raw", path],
        capture_output=True,
        text=True,
        timeout=60,
    )


def by_name(namespace: str, resource: str, name: str, *, watch: bool = False) -> str:
    query = {"fieldSelector": f"metadata.name={name}"}
    if watch:
        query |= {"watch": "true", "timeoutSeconds": "1"}
    return f"/api/v1/namespaces/{namespace}/{resource}?{urllib.parse.urlencode(query)}"


def test_the_operator_reads_and_watches_its_client_ca_configmap(
    installed: tuple[str, ControlPlane], as_operator: Path, ca_configmaps: str
) -> None:
    overlay, _ = installed
    name = KUBELET_CLIENT_CA if overlay == deploy.OPENSHIFT else EXTENSION_AUTH
    got = raw(as_operator, f"/api/v1/namespaces/{ca_configmaps}/configmaps/{name}")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["metadata"]["name"] == name
    listed = raw(as_operator, by_name(ca_configmaps, "configmaps", name))
    assert listed.returncode == 0, listed.stderr
    assert [item["metadata"]["name"] for item in json.loads(listed.stdout)["items"]] == [name]
    watched = raw(as_operator, by_name(ca_configmaps, "configmaps", name, watch=True))
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout.splitlines()[0])["object"]["metadata"]["name"] == name


def test_neighbouring_configmaps_stay_forbidden(as_operator: Path, ca_configmaps: str) -> None:
    for path in (
        f"/api/v1/namespaces/{ca_configmaps}/configmaps/neighbour",
        by_name(ca_configmaps, "configmaps", "neighbour"),
        f"/api/v1/namespaces/{ca_configmaps}/configmaps",
    ):
        answer = raw(as_operator, path)
        assert answer.returncode != 0, path
        assert "forbidden" in answer.stderr.lower(), answer.stderr


def test_the_private_key_is_readable_by_name_and_no_other_secret(
    installed: tuple[str, ControlPlane], as_operator: Path
) -> None:
    _, plane = installed
    for secret in (names.PRIVATE_KEY_SECRET, "unrelated"):
        plane.kubectl("create", "secret", "generic", secret, "-n", OP, "--from-literal=k=v")
    try:
        listed = raw(as_operator, by_name(OP, "secrets", names.PRIVATE_KEY_SECRET))
        assert listed.returncode == 0, listed.stderr
        assert [i["metadata"]["name"] for i in json.loads(listed.stdout)["items"]] == [
            names.PRIVATE_KEY_SECRET
        ]
        for path in (
            f"/api/v1/namespaces/{OP}/secrets/unrelated",
            f"/api/v1/namespaces/{OP}/secrets",
        ):
            answer = raw(as_operator, path)
            assert answer.returncode != 0 and "forbidden" in answer.stderr.lower(), answer.stderr
    finally:
        for secret in (names.PRIVATE_KEY_SECRET, "unrelated"):
            plane.kubectl("delete", "secret", secret, "-n", OP, "--ignore-not-found")


def test_reading_the_network_configuration_is_allowed_and_absent_here(
    installed: tuple[str, ControlPlane], as_operator: Path
) -> None:
    overlay, _ = installed
    answer = raw(as_operator, "/apis/operator.openshift.io/v1/networks/cluster")
    assert answer.returncode != 0
    if overlay == deploy.OPENSHIFT:
        # No such CRD here: the allowed request answers 404 (not 403), which the operator reads as
        # "resolve auto to hostprocess".
        assert "notfound" in answer.stderr.lower().replace(" ", ""), answer.stderr
        assert "forbidden" not in answer.stderr.lower()
    else:
        # The kubernetes overlay sets the profile and grants no read at all.
        assert "forbidden" in answer.stderr.lower(), answer.stderr


# --- Issue 10 (rtc): managed RuntimeClasses -------------------------------------------------------

NODE_API = "node.k8s.io"
MANAGED_RUNTIME_CLASSES = [
    "windows-2019",
    "windows-2022",
    "windows-2025",
    "windows-2022-hyperv",
    "windows-2019-hyperv-on-2022",
    "windows-2022-hyperv-on-2025",
]

RUNTIME_CLASS_ALLOWED: list[Check] = [
    ("list", "runtimeclasses", "", {"group": NODE_API}),
    ("watch", "runtimeclasses", "", {"group": NODE_API}),
    ("get", "runtimeclasses", "", {"group": NODE_API, "name": "users-own"}),
    ("create", "runtimeclasses", "", {"group": NODE_API}),
    *(
        (verb, "runtimeclasses", "", {"group": NODE_API, "name": name})
        for name in MANAGED_RUNTIME_CLASSES
        for verb in ("update", "patch", "delete")
    ),
]

RUNTIME_CLASS_FORBIDDEN: list[Check] = [
    ("update", "runtimeclasses", "", {"group": NODE_API, "name": "users-own"}),
    ("patch", "runtimeclasses", "", {"group": NODE_API, "name": "gvisor"}),
    ("delete", "runtimeclasses", "", {"group": NODE_API, "name": "windows-2022-custom"}),
    ("deletecollection", "runtimeclasses", "", {"group": NODE_API}),
]


def test_operator_may_keep_its_runtimeclasses(
    installed: tuple[str, ControlPlane], admin: Client
) -> None:
    overlay, _ = installed
    refused = [describe(c) for c in RUNTIME_CLASS_ALLOWED if not allowed(admin, c)]
    assert refused == [], f"{overlay}: the operator needs these"


def test_operator_may_not_change_other_runtimeclasses(
    installed: tuple[str, ControlPlane], admin: Client
) -> None:
    overlay, _ = installed
    granted = [describe(c) for c in RUNTIME_CLASS_FORBIDDEN if allowed(admin, c)]
    assert granted == [], f"{overlay}: over-granted"


def test_the_operator_creates_restores_and_deletes_only_its_own_runtimeclass_names(
    installed: tuple[str, ControlPlane], as_operator: Path
) -> None:
    _, applied = installed

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kubectl_path()), f"--kubeconfig={as_operator}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def manifest(name: str) -> str:
        return json.dumps(
            {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
             "metadata": {"name": name}, "handler": "runhcs-wcow-process"}
        )  # fmt: skip

    applied.kubectl("delete", "runtimeclass", "windows-2025", "users-own", "--ignore-not-found")
    applied.kubectl("create", "-f", "-", stdin=manifest("users-own"))
    try:
        created = kubectl("create", "-f", "-", stdin=manifest("windows-2025"))
        assert created.returncode == 0, created.stderr
        labelled = kubectl("label", "runtimeclass", "windows-2025", "edited=yes")
        assert labelled.returncode == 0, labelled.stderr
        foreign = kubectl("label", "runtimeclass", "users-own", "edited=yes")
        assert foreign.returncode != 0 and "forbidden" in foreign.stderr.lower(), foreign.stderr
        refused = kubectl("delete", "runtimeclass", "users-own")
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
        deleted = kubectl("delete", "runtimeclass", "windows-2025")
        assert deleted.returncode == 0, deleted.stderr
    finally:
        applied.kubectl("delete", "runtimeclass", "windows-2025", "users-own", "--ignore-not-found")


# --- Issue 10 (mon): the monitoring objects in the operator's namespace --------------------------

MONITORING = "monitoring.coreos.com"
DISCOVERY = "discovery.k8s.io"
EXPORTER = "windows-exporter"

MONITORING_ALLOWED: list[Check] = [
    ("get", "secrets", OP, {"name": "windows-exporter-ca"}),
    ("watch", "secrets", OP, {"name": "windows-exporter-ca"}),
    ("update", "secrets", OP, {"name": "windows-exporter-ca"}),
    ("get", "services", OP, {"name": EXPORTER}),
    ("list", "services", OP, {}),
    ("watch", "services", OP, {}),
    ("create", "services", OP, {}),
    ("update", "services", OP, {"name": EXPORTER}),
    ("delete", "services", OP, {"name": EXPORTER}),
    ("list", "endpointslices", OP, {"group": DISCOVERY}),
    ("watch", "endpointslices", OP, {"group": DISCOVERY}),
    ("create", "endpointslices", OP, {"group": DISCOVERY}),
    ("update", "endpointslices", OP, {"group": DISCOVERY, "name": EXPORTER}),
    ("list", "servicemonitors", OP, {"group": MONITORING}),
    ("watch", "servicemonitors", OP, {"group": MONITORING}),
    ("create", "servicemonitors", OP, {"group": MONITORING}),
    ("update", "servicemonitors", OP, {"group": MONITORING, "name": EXPORTER}),
]

MONITORING_FORBIDDEN: list[Check] = [
    ("delete", "secrets", OP, {"name": "windows-exporter-ca"}),
    ("update", "secrets", OP, {"name": "cloud-private-key"}),
    ("patch", "secrets", OP, {"name": "windows-exporter-ca"}),
    ("update", "services", OP, {"name": "other"}),
    ("delete", "services", OP, {"name": "other"}),
    ("create", "services", "default", {}),
    ("update", "endpointslices", OP, {"group": DISCOVERY, "name": "other"}),
    ("delete", "endpointslices", OP, {"group": DISCOVERY, "name": EXPORTER}),
    ("create", "endpointslices", "default", {"group": DISCOVERY}),
    ("update", "servicemonitors", OP, {"group": MONITORING, "name": "other"}),
    ("delete", "servicemonitors", OP, {"group": MONITORING, "name": EXPORTER}),
    ("create", "servicemonitors", "default", {"group": MONITORING}),
    ("create", "prometheusrules", OP, {"group": MONITORING}),
    ("create", "endpoints", OP, {}),
]


def test_operator_may_keep_its_monitoring_objects(
    installed: tuple[str, ControlPlane], admin: Client
) -> None:
    overlay, _ = installed
    refused = [describe(c) for c in MONITORING_ALLOWED if not allowed(admin, c)]
    assert refused == [], f"{overlay}: the operator needs these"


def test_operator_may_not_touch_other_monitoring_objects(
    installed: tuple[str, ControlPlane], admin: Client
) -> None:
    overlay, _ = installed
    forbidden = list(MONITORING_FORBIDDEN)
    if overlay == deploy.OPENSHIFT:
        # The exporter CA Secret ships with the manifests: creating Secrets stays forbidden (a
        # service-account-token Secret would mint tokens). The kubernetes overlay writes the user
        # data in this namespace, so there it must create that one Secret (create cannot be
        # narrowed by name).
        forbidden.append(("create", "secrets", OP, {}))
    granted = [describe(c) for c in forbidden if allowed(admin, c)]
    assert granted == [], f"{overlay}: over-granted"


# --- Issue 11 (rekey): the Secret of the keys hosts may still trust ------------------------------

TRUSTED = names.TRUSTED_PRIVATE_KEY_SECRET

REKEY_ALLOWED: list[Check] = [
    *many("get list watch update", "secrets", OP, name=TRUSTED),
]

REKEY_FORBIDDEN: list[Check] = [
    *many("patch delete", "secrets", OP, name=TRUSTED),
    *many("update", "secrets", OP, name="some-other-secret"),
    *many("get update", "secrets", MAPI, name=TRUSTED),
    *many("get update", "secrets", "default", name=TRUSTED),
]


def test_operator_may_keep_its_trusted_key_secret(
    installed: tuple[str, ControlPlane], admin: Client
) -> None:
    overlay, _ = installed
    refused = [describe(c) for c in REKEY_ALLOWED if not allowed(admin, c)]
    assert refused == [], f"{overlay}: the operator needs these"


def test_operator_may_not_touch_other_secrets_for_key_rotation(
    installed: tuple[str, ControlPlane], admin: Client
) -> None:
    overlay, _ = installed
    forbidden = list(REKEY_FORBIDDEN)
    if overlay == deploy.OPENSHIFT:
        # The trusted-key Secret ships with the manifests: creating Secrets stays forbidden.
        forbidden.append(("create", "secrets", OP, {}))
    granted = [describe(c) for c in forbidden if allowed(admin, c)]
    assert granted == [], f"{overlay}: over-granted"


def test_the_trusted_key_secret_ships_and_is_readable_and_writable_by_name(
    installed: tuple[str, ControlPlane], as_operator: Path
) -> None:
    # Shipped by the manifests (empty), read by the informer's list with a name selector, as the
    # ServiceAccount itself...
    listed = raw(as_operator, by_name(OP, "secrets", TRUSTED))
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)["items"]
    assert [i["metadata"]["name"] for i in items] == [TRUSTED]
    labels = items[0]["metadata"].get("labels", {})
    assert labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE
    assert not items[0].get("data")
    watched = raw(as_operator, by_name(OP, "secrets", TRUSTED, watch=True))
    assert watched.returncode == 0, watched.stderr
    # ...and replaced by it (a PUT: what the rekey controller does), but not patched or deleted.
    secret = {"apiVersion": "v1", "kind": "Secret", **items[0]}
    secret["metadata"].setdefault("annotations", {})["checked"] = "yes"
    replaced = operator_kubectl(as_operator, "replace", "-f", "-", stdin=json.dumps(secret))
    assert replaced.returncode == 0, replaced.stderr
    patched = operator_kubectl(
        as_operator, "patch", "secret", TRUSTED, "-n", OP, "-p", '{"data":{"x":"eA=="}}'
    )
    assert patched.returncode != 0 and "forbidden" in patched.stderr.lower(), patched.stderr
    deleted = operator_kubectl(as_operator, "delete", "secret", TRUSTED, "-n", OP)
    assert deleted.returncode != 0 and "forbidden" in deleted.stderr.lower(), deleted.stderr
    other = operator_kubectl(as_operator, "get", "secret", "-n", OP)
    assert other.returncode != 0 and "forbidden" in other.stderr.lower(), other.stderr


def operator_kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kubectl_path()), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
