"""Proof that the control plane is real: versions, controllers, RBAC, CSRs, bootstrap tokens, scheduling.

Each test uses its own namespace (or cluster-scoped names unique to the test) on the one control
plane of the session.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.apiextensions_v1 import (
    CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion,
    CustomResourceSubresources,
    CustomResourceValidation,
    JSONSchemaProps,
)
from lightkube.models.certificates_v1 import (
    CertificateSigningRequestCondition,
    CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
)
from lightkube.models.core_v1 import (
    Container,
    NodeSpec,
    PodSpec,
    Taint,
    Toleration,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.node_v1 import Scheduling
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.certificates_v1 import (
    CertificateSigningRequest,
    CertificateSigningRequestApproval,
)
from lightkube.resources.core_v1 import ConfigMap, Namespace, Node, NodeStatus, Pod, Secret
from lightkube.resources.node_v1 import RuntimeClass
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding
from lightkube.types import PatchType

from kube_helpers import bootstrap_token_secret, eventually
from wmco_sandbox import pki
from wmco_sandbox.controlplane import ControlPlane

pytestmark = pytest.mark.integration


def raw_get(plane: ControlPlane, path: str, token: str) -> tuple[int, Any]:
    """GET `path` with a bearer token; return (status, parsed JSON or text)."""
    import json

    ctx = ssl.create_default_context(cadata=plane.ca_pem.decode())
    request = urllib.request.Request(
        plane.server + path, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def raw_post(plane: ControlPlane, path: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST a JSON `body` with a bearer token; return (status, parsed JSON or text)."""
    import json

    ctx = ssl.create_default_context(cadata=plane.ca_pem.decode())
    request = urllib.request.Request(
        plane.server + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_version_reports_the_built_kubernetes(control_plane: ControlPlane) -> None:
    version = control_plane.get_json("/version")
    assert version["gitVersion"].startswith("v1.37."), version
    assert version["major"] == "1" and version["minor"] == "37"
    # kubectl from the same build agrees.
    assert '"gitVersion": "v1.37.' in control_plane.kubectl("get", "--raw", "/version")


async def test_deleted_namespace_really_goes_away(kube: AsyncClient) -> None:
    name = f"gone-{secrets.token_hex(4)}"
    await kube.create(Namespace(metadata=ObjectMeta(name=name)))
    await kube.create(ConfigMap(metadata=ObjectMeta(name="c", namespace=name), data={"a": "b"}))
    await kube.delete(Namespace, name)

    async def gone() -> bool:
        try:
            await kube.get(Namespace, name)
        except ApiError as err:
            return err.status.code == 404
        return False

    await eventually(gone, f"namespace {name} to be deleted by the namespace controller")


async def test_custom_resource_with_status_subresource(kube: AsyncClient, namespace: str) -> None:
    group = f"g{secrets.token_hex(3)}.wmco.test"
    crd = CustomResourceDefinition(
        metadata=ObjectMeta(name=f"widgets.{group}"),
        spec=CustomResourceDefinitionSpec(
            group=group,
            names=CustomResourceDefinitionNames(kind="Widget", plural="widgets", singular="widget"),
            scope="Namespaced",
            versions=[
                CustomResourceDefinitionVersion(
                    name="v1",
                    served=True,
                    storage=True,
                    subresources=CustomResourceSubresources(status={}),
                    schema=CustomResourceValidation(
                        openAPIV3Schema=JSONSchemaProps(
                            type="object",
                            properties={
                                "spec": JSONSchemaProps(
                                    type="object",
                                    properties={"size": JSONSchemaProps(type="integer")},
                                ),
                                "status": JSONSchemaProps(
                                    type="object",
                                    properties={"phase": JSONSchemaProps(type="string")},
                                ),
                            },
                        )
                    ),
                )
            ],
        ),
    )
    await kube.create(crd)
    try:
        widget_kind = create_namespaced_resource(group, "v1", "Widget", "widgets")

        async def established() -> bool:
            got = await kube.get(CustomResourceDefinition, crd.metadata.name)  # type: ignore[union-attr]
            conditions = got.status.conditions if got.status else None
            return any(c.type == "Established" and c.status == "True" for c in conditions or [])

        await eventually(established, "the CRD to be established")
        created = await kube.create(
            widget_kind(metadata=ObjectMeta(name="w1", namespace=namespace), spec={"size": 3})
        )
        assert created.spec == {"size": 3}
        # The status subresource: a status in a main-resource update is ignored ...
        await kube.patch(
            widget_kind,
            "w1",
            {"status": {"phase": "Ignored"}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        assert (await kube.get(widget_kind, "w1", namespace=namespace)).status in (None, {})
        # ... and only the /status endpoint sets it.
        await kube.patch(
            widget_kind.Status,
            "w1",
            {"status": {"phase": "Ready"}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        got = await kube.get(widget_kind, "w1", namespace=namespace)
        assert got.status == {"phase": "Ready"}
        assert got.spec == {"size": 3}
    finally:
        await kube.delete(CustomResourceDefinition, crd.metadata.name)  # type: ignore[union-attr]


async def test_rbac_refuses_then_allows_after_rolebinding(
    control_plane: ControlPlane, kube: AsyncClient, namespace: str
) -> None:
    user = f"user-{secrets.token_hex(3)}"
    config = KubeConfig.from_file(control_plane.kubeconfig_for(user))
    async with AsyncClient(config=config) as as_user:
        with pytest.raises(ApiError) as refused:
            _ = [c async for c in as_user.list(ConfigMap, namespace=namespace)]
        assert refused.value.status.code == 403

        await kube.create(
            Role(
                metadata=ObjectMeta(name="read-cm", namespace=namespace),
                rules=[PolicyRule(apiGroups=[""], resources=["configmaps"], verbs=["get", "list"])],
            )
        )
        await kube.create(
            RoleBinding(
                metadata=ObjectMeta(name="read-cm", namespace=namespace),
                roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="Role", name="read-cm"),
                subjects=[Subject(kind="User", name=user, apiGroup="rbac.authorization.k8s.io")],
            )
        )

        async def allowed() -> bool:
            try:
                _ = [c async for c in as_user.list(ConfigMap, namespace=namespace)]
            except ApiError as err:
                assert err.status.code == 403
                return False
            return True

        await eventually(allowed, "the RoleBinding to take effect", timeout=30)
        # Still refused for what the Role does not grant.
        with pytest.raises(ApiError) as still:
            await as_user.create(ConfigMap(metadata=ObjectMeta(name="x", namespace=namespace)))
        assert still.value.status.code == 403


def kubelet_csr_pem(node: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


async def test_kubelet_csr_stays_pending_until_approved_then_is_signed(kube: AsyncClient) -> None:
    name = f"csr-{secrets.token_hex(4)}"
    node = f"win-{secrets.token_hex(3)}"
    await kube.create(
        CertificateSigningRequest(
            metadata=ObjectMeta(name=name),
            spec=CertificateSigningRequestSpec(
                request=base64.b64encode(kubelet_csr_pem(node)).decode(),
                signerName="kubernetes.io/kube-apiserver-client-kubelet",
                usages=["digital signature", "client auth"],
            ),
        )
    )
    try:
        # Nothing approves it on its own: give the controller-manager's approver time to (not) act.
        for _ in range(10):
            got = await kube.get(CertificateSigningRequest, name)
            assert not (got.status and got.status.conditions), got.status
            assert not (got.status and got.status.certificate)
            await asyncio.sleep(0.3)

        got = await kube.get(CertificateSigningRequest, name)
        got.status = CertificateSigningRequestStatus(
            conditions=[
                CertificateSigningRequestCondition(
                    type="Approved",
                    status="True",
                    reason="TestApproved",
                    message="approved by the test",
                )
            ]
        )
        await kube.replace(CertificateSigningRequestApproval.from_dict(got.to_dict()), name)

        issued: dict[str, bytes] = {}

        async def signed() -> bool:
            current = await kube.get(CertificateSigningRequest, name)
            if current.status and current.status.certificate:
                issued["pem"] = base64.b64decode(current.status.certificate)
                return True
            return False

        await eventually(signed, "the controller-manager to sign the approved CSR")
        cert = x509.load_pem_x509_certificate(issued["pem"])
        assert (
            cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            == f"system:node:{node}"
        )
    finally:
        await kube.delete(CertificateSigningRequest, name)


async def test_bootstrap_token_authenticates_as_bootstrap_user(
    control_plane: ControlPlane, kube: AsyncClient
) -> None:
    token_id, token_secret = secrets.token_hex(3), secrets.token_hex(8)
    await kube.create(bootstrap_token_secret(token_id, token_secret, "system:bootstrappers:worker"))
    try:
        token = f"{token_id}.{token_secret}"
        status, review = raw_post(
            control_plane,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            token,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert status == 201, review
        user = review["status"]["userInfo"]
        assert user["username"] == f"system:bootstrap:{token_id}"
        assert "system:bootstrappers" in user["groups"]
        assert "system:bootstrappers:worker" in user["groups"]
        # A wrong secret is not authenticated.
        bad_status, _ = raw_get(control_plane, "/api", f"{token_id}.{'0' * 16}")
        assert bad_status == 401
    finally:
        await kube.delete(Secret, f"bootstrap-token-{token_id}", namespace="kube-system")


async def test_runtimeclass_steers_pods_to_the_windows_node(
    kube: AsyncClient, namespace: str
) -> None:
    node_name = f"win-{secrets.token_hex(3)}"
    windows = {"kubernetes.io/os": "windows"}
    taint = Taint(key="os", value="Windows", effect="NoSchedule")
    await kube.create(
        Node(
            metadata=ObjectMeta(
                name=node_name, labels={**windows, "kubernetes.io/hostname": node_name}
            ),
            spec=NodeSpec(taints=[taint]),
        )
    )
    await kube.patch(
        NodeStatus, node_name, {"status": _ready_status().to_dict()}, patch_type=PatchType.MERGE
    )
    rc_name = f"windows-{secrets.token_hex(3)}"
    await kube.create(
        RuntimeClass(
            metadata=ObjectMeta(name=rc_name),
            handler="runhcs-wcow-process",
            scheduling=Scheduling(
                nodeSelector=windows,
                tolerations=[
                    Toleration(key="os", value="Windows", effect="NoSchedule", operator="Equal")
                ],
            ),
        )
    )
    try:
        windows_pod = await kube.create(
            Pod(
                metadata=ObjectMeta(name="win", namespace=namespace),
                spec=PodSpec(
                    runtimeClassName=rc_name, containers=[Container(name="c", image="iis")]
                ),
            )
        )
        assert windows_pod.spec is not None
        assert windows_pod.spec.nodeSelector == windows
        assert any(
            t.key == "os" and t.value == "Windows" for t in windows_pod.spec.tolerations or []
        )
        plain = await kube.create(
            Pod(
                metadata=ObjectMeta(name="plain", namespace=namespace),
                spec=PodSpec(containers=[Container(name="c", image="nginx")]),
            )
        )
        assert plain.spec is not None and not plain.spec.nodeSelector

        async def bound() -> bool:
            got = await kube.get(Pod, "win", namespace=namespace)
            return bool(got.spec and got.spec.nodeName == node_name)

        await eventually(bound, "the scheduler to bind the Windows pod to the Windows node")

        async def plain_unschedulable() -> bool:
            got = await kube.get(Pod, "plain", namespace=namespace)
            conditions = got.status.conditions if got.status else None
            return any(
                c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
                for c in conditions or []
            )

        await eventually(plain_unschedulable, "the scheduler to refuse the plain pod")
        assert (await kube.get(Pod, "plain", namespace=namespace)).spec.nodeName is None  # type: ignore[union-attr]
    finally:
        await kube.delete(RuntimeClass, rc_name)
        await kube.delete(Node, node_name)


def _ready_status() -> Any:
    from lightkube.models.core_v1 import NodeCondition, NodeStatus

    return NodeStatus(
        conditions=[
            NodeCondition(type="Ready", status="True", reason="KubeletReady", message="ready")
        ],
        capacity={"cpu": "4", "memory": "8Gi", "pods": "110"},
        allocatable={"cpu": "4", "memory": "8Gi", "pods": "110"},
    )


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_controlplane_cli_leaves_nothing_running(tmp_path: Path, how: str) -> None:
    """`wmco controlplane up`: ready file, then nothing left running after SIGTERM or a crash (SIGKILL)."""
    import json
    import signal
    import subprocess
    import sys

    state = tmp_path / "cp"
    output = tmp_path / "cli.log"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wmco", "controlplane", "up", "--state-dir", str(state)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not (state / "ready").exists():
            assert proc.poll() is None, output.read_text()
            assert time.monotonic() < deadline, "control plane CLI never wrote ready"
            time.sleep(0.2)
        assert (state / "kubeconfig").exists()
        pids = json.loads((state / "pids.json").read_text())
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
        assert all(_running(pid) for pid in pids.values())
        proc.send_signal(getattr(signal, how))
        code = proc.wait(timeout=60)
        if how == "SIGTERM":
            assert code == 0
            assert not (state / "ready").exists()
        deadline = time.monotonic() + 30
        while any(_running(pid) for pid in pids.values()):
            assert time.monotonic() < deadline, {n: p for n, p in pids.items() if _running(p)}
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _subject_and_issuer(pem: bytes) -> tuple[str, str]:
    cert = x509.load_pem_x509_certificate(pem)
    return cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()


async def test_certificate_authorities_are_kept_apart(
    control_plane: ControlPlane, kube: AsyncClient
) -> None:
    plane = control_plane
    cas = {
        "serving": plane.serving_ca_pem,
        "client": plane.client_ca_pem,
        "signer": plane.signer_ca_pem,
        "kubelet-client": plane.kubelet_client_ca_pem,
    }
    assert len({pem for pem in cas.values()}) == 4, "each role has its own CA"
    assert plane.ca_pem == plane.serving_ca_pem
    # What plain Kubernetes publishes as the API server's client CA carries the CA that signs the
    # API server's own kubelet-client certificate (the kubeadm layout), and the CSR signer.
    auth = await kube.get(ConfigMap, "extension-apiserver-authentication", namespace="kube-system")
    bundle = (auth.data or {})["client-ca-file"]
    for role in ("client", "signer", "kubelet-client"):
        assert cas[role].decode().strip() in bundle, role
    assert plane.serving_ca_pem.decode().strip() not in bundle
    assert plane.state_dir is not None
    pki_dir = plane.state_dir / "pki"
    kubelet_client = (pki_dir / "apiserver-kubelet-client.crt").read_bytes()
    serving = (pki_dir / "apiserver.crt").read_bytes()
    assert (
        _subject_and_issuer(kubelet_client)[1]
        == _subject_and_issuer(plane.kubelet_client_ca_pem)[0]
    )
    assert _subject_and_issuer(serving)[1] == _subject_and_issuer(plane.serving_ca_pem)[0]
    # The serving CA does not authenticate clients: a certificate it signed is anonymous.
    rogue_ca = pki.CertificateAuthority("rogue")
    rogue = rogue_ca.issue("wmco-admin", organizations=["system:masters"], client=True)
    ctx = ssl.create_default_context(cadata=plane.ca_pem.decode())
    tmp = plane.state_dir / "rogue"
    tmp.mkdir(exist_ok=True)
    (tmp / "c.crt").write_bytes(rogue.cert_pem)
    (tmp / "c.key").write_bytes(rogue.key_pem)
    ctx.load_cert_chain(tmp / "c.crt", tmp / "c.key")

    def get_namespaces() -> None:
        urllib.request.urlopen(plane.server + "/api/v1/namespaces", context=ctx, timeout=10)

    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(get_namespaces)
    assert refused.value.code == 401
