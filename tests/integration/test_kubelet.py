"""The simulated Windows kubelet against the real control plane.

Covers: TLS bootstrap with a bootstrap token (the CSR stays pending until the test approves it),
Node registration under NodeRestriction (labels, taints, annotations, nodeInfo, addresses,
capacity), Ready following containerd's CRI (the service running, with a loadable CNI
configuration whose HNS network exists), Lease renewal and its end on stop(), restart
with the stored credentials, client-certificate rotation with the node's own identity, the
serving-certificate CSR and its SANs, pods bound to the node run through the CRI (pod IP from
the CNI, or Failed at admission) and graceful deletions finalised, and start-up failures (missing bootstrap
kubeconfig, forbidden --node-labels, rejected bootstrap token). A few pure parsing checks come
first; they need no cluster.

Each test uses its own host name, node and bootstrap token on the session's control plane.
Waiting is always "poll a condition until a deadline"; intervals are short to keep it quick.
"""

from __future__ import annotations

import asyncio

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lightkube import ApiError, AsyncClient
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.certificates_v1 import (
    CertificateSigningRequest,
)
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Pod

import containerd_helpers
import kubelet_helpers
from kubelet_helpers import (
    BOOTSTRAP_CA,
    CLIENT_SIGNER,
    FAST,
    PKI,
    SERVING_SIGNER,
    FakeHost,
    approve,
    bootstrapped,
    condition,
    csr_request,
    eventually,
    find_csr,
    kubelet_conf,
    lease_renew_time,
    make_host,
    start,
    wmco_argv,
)
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost import kubelet
from wmco_sandbox.winhost.core.processes import KubeletConfigError
from wmco_sandbox.winhost.kubelet import kubeconfig as kubelet_kubeconfig
from wmco_sandbox.winhost.kubelet import node as kubelet_node
from wmco_sandbox.winhost.kubelet import options as kubelet_options
from wmco_sandbox.winhost.kubelet import pki as kubelet_pki

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------------ pure


def test_flags_are_parsed_the_pflag_way() -> None:
    flags = kubelet_options.parse_flags(
        [
            "C:\\k\\kube-log-runner.exe",
            "-log-file=C:\\var\\log\\kubelet\\kubelet.log",
            "C:\\k\\kubelet.exe",
            "--config",
            "C:\\k\\kubelet.conf",
            "--windows-service",
            "--v=4",
            "--hostname-override=EC2AMAZ-ABC",
        ]
    )
    assert flags == {
        "config": "C:\\k\\kubelet.conf",
        "windows-service": "true",
        "v": "4",
        "hostname-override": "EC2AMAZ-ABC",
    }


def test_node_labels_refused_like_the_kubelet() -> None:
    with pytest.raises(kubelet_options.OptionsError, match=r"\[node-role.kubernetes.io/worker\]"):
        kubelet_options.validate_node_labels({"node-role.kubernetes.io/worker": ""})
    kubelet_options.validate_node_labels({"node.kubernetes.io/foo": "x", "example.com/bar": "y"})
    assert kubelet_options.parse_taints("os=Windows:NoSchedule,dedicated:NoExecute") == (
        kubelet_options.Taint("os", "Windows", "NoSchedule"),
        kubelet_options.Taint("dedicated", "", "NoExecute"),
    )
    assert kubelet_options.parse_duration("1m30s") == 90.0


def test_allocatable_follows_the_node_allocatable_rule() -> None:
    host = FakeHost(facts=containerd_helpers.new_facts())
    host.write_file("C:\\k\\kubelet.conf", kubelet_conf())
    opts = kubelet_options.resolve_options(
        ["--config=C:\\k\\kubelet.conf"], hostname="WIN-1", read_file=host.read_file
    )
    cap = {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "100Gi", "pods": "250"}
    assert kubelet_node.allocatable(opts, cap) == {
        "cpu": "1500m",
        "memory": f"{6 * 1024 * 1024}Ki",
        "ephemeral-storage": f"{(100 * 1024 * 1024 - 1024 * 1024) - 10 * 1024 * 1024}Ki",
        "pods": "250",
    }
    assert opts.node_name == "win-1"


def test_kubeconfig_files_are_read_from_the_host_disk() -> None:
    host = FakeHost(facts=containerd_helpers.new_facts())
    host.write_file("C:\\k\\ca.crt", b"CA")
    host.write_file("C:\\k\\token", b"abcdef.0123456789abcdef\n")
    doc = {
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": "https://api:6443", "certificate-authority": "ca.crt"},
            }
        ],
        "users": [{"name": "u", "user": {"tokenFile": "C:\\k\\token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    host.write_file("C:\\k\\bootstrap-kubeconfig", yaml.safe_dump(doc).encode())
    resolved = kubelet_kubeconfig.resolve_kubeconfig("C:\\k\\bootstrap-kubeconfig", host.read_file)
    assert (resolved.server, resolved.ca_pem, resolved.ca_path) == (
        "https://api:6443",
        b"CA",
        "C:\\k\\ca.crt",
    )
    assert resolved.token == "abcdef.0123456789abcdef" and resolved.client is None
    with pytest.raises(kubelet_kubeconfig.KubeconfigError, match="cannot find the file"):
        kubelet_kubeconfig.resolve_kubeconfig("C:\\k\\missing", host.read_file)


def test_flag_values_naming_kubelet_exe_are_not_the_program() -> None:
    assert kubelet_options.parse_flags(["--config=C:\\kubelet.exe", "--v", "2"]) == {
        "config": "C:\\kubelet.exe",
        "v": "2",
    }


# ------------------------------------------------------------------------------------ bootstrap


async def test_bootstrap_waits_for_approval_then_registers_a_windows_node(
    kube: AsyncClient,
    control_plane: ControlPlane,
    token: str,
    cleanup: list[kubelet.SimulatedKubelet],
) -> None:
    host = await make_host(control_plane, token)
    k = await start(host, cleanup)
    node_name = host.facts.hostname.lower()
    assert k.node_name == node_name

    # The kubeconfig pointing at the not-yet-existing client certificate is written at once.
    kubeconfig = yaml.safe_load(host.read_file("C:\\k\\kubeconfig") or b"")
    assert (
        kubeconfig["users"][0]["user"]["client-certificate"] == f"{PKI}\\kubelet-client-current.pem"
    )
    assert kubeconfig["clusters"][0]["cluster"]["certificate-authority"] == BOOTSTRAP_CA

    csr = await find_csr(kube, CLIENT_SIGNER, node_name)
    assert csr.spec is not None and csr.metadata is not None and csr.metadata.name
    assert csr.metadata.name.startswith("csr-")
    assert csr.spec.username == f"system:bootstrap:{token.split('.')[0]}"
    assert set(csr.spec.usages or []) == {"digital signature", "client auth"}
    request = csr_request(csr)
    assert (
        request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    )
    assert isinstance(request.public_key(), ec.EllipticCurvePublicKey)

    # Nobody approves automatically: still pending, no certificate, no Node.
    fresh = await kube.get(CertificateSigningRequest, csr.metadata.name)
    assert not (fresh.status and (fresh.status.conditions or fresh.status.certificate))
    assert k.phase is kubelet.KubeletPhase.BOOTSTRAPPING
    with pytest.raises(ApiError) as missing:
        await kube.get(Node, node_name)
    assert missing.value.status.code == 404

    await approve(kube, csr.metadata.name)
    await asyncio.wait_for(k.registered.wait(), 30)

    stored = host.read_file(f"{PKI}\\kubelet-client-current.pem")
    bundle = kubelet_pki.split_bundle(stored or b"")
    assert bundle is not None and b"EC PRIVATE KEY" in bundle.key_pem
    cert = x509.load_pem_x509_certificate(bundle.cert_pem)
    assert (
        cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        == f"system:node:{node_name}"
    )
    assert any(n.endswith(".pem") and n.startswith("kubelet-client-2") for n in host.files_in(PKI))

    async def ready_node() -> Node | None:
        node = await kube.get(Node, node_name)
        return (
            node
            if node.status and node.status.conditions and condition(node, "Ready").status == "True"
            else None
        )

    node = await eventually(ready_node, "the Node to be Ready")
    assert node.metadata is not None and node.spec is not None and node.status is not None
    labels = node.metadata.labels or {}
    assert {
        "kubernetes.io/os": "windows",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "windows",
        "beta.kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": node_name,
        "node.kubernetes.io/windows-build": "10.0.20348",
        "node.openshift.io/os_id": "Windows",
    }.items() <= labels.items()
    assert (node.metadata.annotations or {})[kubelet_node.ATTACH_DETACH_ANNOTATION] == "true"
    taints = {(t.key, t.value, t.effect) for t in node.spec.taints or []}
    assert ("os", "Windows", "NoSchedule") in taints
    info = node.status.nodeInfo
    assert info is not None
    version = control_plane.get_json("/version")["gitVersion"]
    assert (info.operatingSystem, info.architecture) == ("windows", "amd64")
    assert info.osImage == "Windows Server 2022 Datacenter"
    assert info.kernelVersion == "10.0.20348.2527"
    assert info.containerRuntimeVersion.startswith("containerd://1.7.")
    assert info.kubeletVersion == version
    assert {(a.type, a.address) for a in node.status.addresses or []} == {
        ("InternalIP", host.facts.address),
        ("Hostname", node_name),
    }
    assert node.status.capacity is not None and node.status.allocatable is not None
    assert node.status.capacity["pods"] == "250" and node.status.allocatable["cpu"] == "3500m"
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert condition(node, kind).status == "False"
    assert condition(node, "Ready").reason == "KubeletReady"
    assert node.status.daemonEndpoints is not None
    assert node.status.daemonEndpoints.kubeletEndpoint is not None
    assert node.status.daemonEndpoints.kubeletEndpoint.Port == 10250

    # The Lease: owned by the Node, renewed.
    lease = await eventually(
        lambda: _lease_with_owner(kube, node_name), "the Lease with its owner reference"
    )
    assert lease.spec is not None and lease.spec.holderIdentity == node_name
    assert lease.spec.leaseDurationSeconds == 40
    assert lease.metadata is not None and lease.metadata.ownerReferences is not None
    assert lease.metadata.ownerReferences[0].uid == node.metadata.uid
    first = lease.spec.renewTime
    assert first is not None

    async def renewed() -> bool:
        later = await lease_renew_time(kube, node_name)
        return later is not None and later > first

    await eventually(renewed, "the Lease to be renewed")
    assert not host.exits


async def _lease_with_owner(kube: AsyncClient, name: str) -> Lease | None:
    try:
        lease = await kube.get(Lease, name, namespace="kube-node-lease")
    except ApiError:
        return None
    return lease if lease.metadata and lease.metadata.ownerReferences else None


# ------------------------------------------------------------------------------------ heartbeats


async def test_ready_follows_containerd_and_stop_ends_heartbeats(
    kube: AsyncClient,
    control_plane: ControlPlane,
    token: str,
    cleanup: list[kubelet.SimulatedKubelet],
) -> None:
    started = await bootstrapped(
        kube, await make_host(control_plane, token, ca_by_path=False), cleanup
    )
    name = started.node_name

    async def ready_is(status: str) -> Node | None:
        node = await kube.get(Node, name)
        if node.status and node.status.conditions and condition(node, "Ready").status == status:
            return node
        return None

    await eventually(lambda: ready_is("True"), "Ready=True")
    machine = started.host.machine
    await machine.scm.stop("containerd")
    node = await eventually(
        lambda: ready_is("False"), "Ready=False after containerd stopped", timeout=10
    )
    ready = condition(node, "Ready")
    assert ready.reason == "KubeletNotReady" and "container runtime is down" in ready.message
    await machine.scm.start("containerd")
    await eventually(lambda: ready_is("True"), "Ready=True after containerd started", timeout=10)

    await started.kubelet.stop()
    assert started.kubelet.phase is kubelet.KubeletPhase.STOPPED
    stopped_at = await lease_renew_time(kube, name)
    assert stopped_at is not None
    # A negative check needs a window: several renew intervals must pass without a renewal.
    await asyncio.sleep(FAST["lease_renew_interval"] * 5)
    assert await lease_renew_time(kube, name) == stopped_at


async def test_restart_reuses_the_client_certificate_and_updates_the_node(
    kube: AsyncClient,
    control_plane: ControlPlane,
    token: str,
    cleanup: list[kubelet.SimulatedKubelet],
) -> None:
    started = await bootstrapped(kube, await make_host(control_plane, token), cleanup)
    await started.kubelet.stop()
    csrs_before = {
        c.metadata.name
        async for c in kube.list(CertificateSigningRequest)
        if c.metadata is not None
    }
    # An admin label survives: the restarted kubelet only reconciles its own labels.
    await kube.patch(
        Node, started.node_name, {"metadata": {"labels": {"node-role.kubernetes.io/worker": ""}}}
    )

    again = await start(started.host, cleanup)
    await asyncio.wait_for(again.registered.wait(), 30)
    assert again.client_csr_name is None
    csrs_after = {
        c.metadata.name
        async for c in kube.list(CertificateSigningRequest)
        if c.metadata is not None
    }
    assert csrs_after == csrs_before
    node = await kube.get(Node, started.node_name)
    assert node.metadata is not None and "node-role.kubernetes.io/worker" in (
        node.metadata.labels or {}
    )
    before = await lease_renew_time(kube, started.node_name)

    async def renewed() -> bool:
        later = await lease_renew_time(kube, started.node_name)
        return before is not None and later is not None and later > before

    await eventually(renewed, "Lease renewals by the restarted kubelet")
    assert not started.host.exits


async def test_client_certificate_rotation_switches_identity_without_a_gap(
    kube: AsyncClient,
    control_plane: ControlPlane,
    token: str,
    cleanup: list[kubelet.SimulatedKubelet],
) -> None:
    host = await make_host(control_plane, token)
    k = await start(host, cleanup, client_rotation_after=0.5)
    node_name = k.node_name
    assert node_name is not None
    first = await find_csr(kube, CLIENT_SIGNER, node_name)
    assert first.metadata is not None and first.metadata.name
    await approve(kube, first.metadata.name)
    await asyncio.wait_for(k.registered.wait(), 30)
    old_pem = host.read_file(f"{PKI}\\kubelet-client-current.pem")

    async def renewal_csr() -> CertificateSigningRequest | None:
        async for csr in kube.list(
            CertificateSigningRequest, fields={"spec.signerName": CLIENT_SIGNER}
        ):
            if csr.spec and csr.spec.username == f"system:node:{node_name}":
                return csr
        return None

    renewal = await eventually(renewal_csr, "the renewal CSR sent with the node's own identity")
    assert renewal.metadata is not None and renewal.metadata.name
    assert csr_request(renewal).subject == csr_request(first).subject
    await approve(kube, renewal.metadata.name)

    async def rotated() -> bool:
        return host.read_file(f"{PKI}\\kubelet-client-current.pem") != old_pem

    await eventually(rotated, "the new client certificate on disk")
    before = await lease_renew_time(kube, node_name)

    async def renewed() -> bool:
        later = await lease_renew_time(kube, node_name)
        return before is not None and later is not None and later > before

    await eventually(renewed, "Lease renewals with the new certificate")
    assert k.phase is kubelet.KubeletPhase.RUNNING and not host.exits


# ------------------------------------------------------------------------------------ serving cert


async def test_serving_csr_carries_the_node_addresses(
    kube: AsyncClient,
    control_plane: ControlPlane,
    token: str,
    cleanup: list[kubelet.SimulatedKubelet],
) -> None:
    host = await make_host(control_plane, token, serverTLSBootstrap=True)
    started = await bootstrapped(
        kube, host, cleanup, "--hostname-override", "IP-10-0-1-23.EC2.Internal"
    )
    assert started.node_name == "ip-10-0-1-23.ec2.internal"
    csr = await find_csr(kube, SERVING_SIGNER, started.node_name)
    assert csr.spec is not None and csr.metadata is not None and csr.metadata.name
    assert csr.spec.username == f"system:node:{started.node_name}"
    assert set(csr.spec.usages or []) == {"digital signature", "server auth"}
    san = csr_request(csr).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [started.node_name]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [host.facts.address]

    # Ready does not wait for the serving certificate.
    node = await kube.get(Node, started.node_name)
    assert not started.kubelet.serving_certificate_ready.is_set()
    assert node.status is not None

    await approve(kube, csr.metadata.name)
    await asyncio.wait_for(started.kubelet.serving_certificate_ready.wait(), 30)
    bundle = kubelet_pki.split_bundle(host.read_file(f"{PKI}\\kubelet-server-current.pem") or b"")
    assert bundle is not None
    cert = x509.load_pem_x509_certificate(bundle.cert_pem)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in list(usages)


# ------------------------------------------------------------------------------------ pods


async def test_bound_pod_runs_and_graceful_delete_is_finalised(
    kube: AsyncClient,
    control_plane: ControlPlane,
    token: str,
    namespace: str,
    cleanup: list[kubelet.SimulatedKubelet],
) -> None:
    started = await bootstrapped(kube, await make_host(control_plane, token), cleanup)

    await kubelet_helpers.default_service_account(kube, namespace)
    await kube.create(
        Pod(
            metadata=ObjectMeta(name="web", namespace=namespace),
            spec=PodSpec(
                nodeName=started.node_name,
                containers=[
                    Container(name="iis", image="mcr.microsoft.com/windows/servercore/iis:latest")
                ],
            ),
        )
    )

    async def running() -> Pod | None:
        pod = await kube.get(Pod, "web", namespace=namespace)
        return pod if pod.status and pod.status.phase == "Running" else None

    pod = await eventually(running, "the pod to run")
    assert pod.status is not None
    assert pod.status.podIP == "10.132.0.2"  # host-local's first address of the node subnet
    assert pod.status.hostIP == started.host.facts.address
    assert pod.status.startTime is not None
    statuses = pod.status.containerStatuses or []
    assert [(s.name, s.ready) for s in statuses] == [("iis", True)]
    assert statuses[0].state is not None and statuses[0].state.running is not None
    ready = next(c for c in pod.status.conditions or [] if c.type == "Ready")
    assert ready.status == "True"

    # Kubelet admission: a Linux pod forced onto the node fails with the predicate's reason.
    await kube.create(
        Pod(
            metadata=ObjectMeta(name="linux", namespace=namespace),
            spec=PodSpec(
                nodeName=started.node_name,
                nodeSelector={"kubernetes.io/os": "linux"},
                containers=[Container(name="sh", image="busybox")],
            ),
        )
    )

    async def rejected() -> Pod | None:
        pod = await kube.get(Pod, "linux", namespace=namespace)
        return pod if pod.status and pod.status.phase == "Failed" else None

    failed = await eventually(rejected, "the Linux pod to be rejected")
    assert failed.status is not None and failed.status.reason == "NodeAffinity"

    await kube.delete(Pod, "web", namespace=namespace)  # graceful: 30 s by default

    async def gone() -> bool:
        try:
            await kube.get(Pod, "web", namespace=namespace)
        except ApiError as err:
            return err.status.code == 404
        return False

    await eventually(gone, "the kubelet to finalise the pod's deletion", timeout=15)


# ------------------------------------------------------------------------------------ failures


async def test_missing_bootstrap_kubeconfig_fails_the_start(control_plane: ControlPlane) -> None:
    host = FakeHost(facts=containerd_helpers.new_facts())
    host.write_file("C:\\k\\kubelet.conf", kubelet_conf())
    k = kubelet.SimulatedKubelet(wmco_argv(host), host, **FAST)
    with pytest.raises(KubeletConfigError, match="unable to load bootstrap kubeconfig"):
        await k.start()
    assert host.logged("unable to load bootstrap kubeconfig: stat C:\\k\\bootstrap-kubeconfig")
    await k.stop()


async def test_forbidden_node_label_fails_the_start(
    control_plane: ControlPlane, token: str
) -> None:
    host = await make_host(control_plane, token)
    argv = [a for a in wmco_argv(host) if not a.startswith("--node-labels")]
    k = kubelet.SimulatedKubelet(
        [*argv, "--node-labels=node-role.kubernetes.io/worker="], host, **FAST
    )
    with pytest.raises(KubeletConfigError, match=r"unknown 'kubernetes\.io' or 'k8s\.io' labels"):
        await k.start()
    assert host.logged("node-role.kubernetes.io/worker")


async def test_rejected_bootstrap_token_makes_the_kubelet_exit(
    control_plane: ControlPlane, cleanup: list[kubelet.SimulatedKubelet]
) -> None:
    host = await make_host(control_plane, "abcdef.0123456789abcdef")
    k = await start(host, cleanup, client_cert_timeout=1.5)

    async def exited() -> bool:
        return bool(host.exits)

    await eventually(exited, "the kubelet to exit", timeout=15)
    code, reason = host.exits[0]
    assert code == 1
    assert "since a valid client cert was found and the server is responsive" in reason
    assert "Unauthorized" in reason or "401" in reason
    assert k.phase is kubelet.KubeletPhase.EXITED
