"""Helpers for the tests of the simulated kubelet against the real control plane.

A :class:`FakeHost` is a ``KubeletEnvironment`` over a real simulated :class:`Machine` (disk,
SCM, HNS, firewall) on which containerd runs as the operator installs it
(``containerd_helpers``); it records what the kubelet logs and how it exits. The rest builds
WMCO-shaped kubelet files, starts kubelets with short intervals and approves their CSRs.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from lightkube import ApiError, AsyncClient
from lightkube.models.certificates_v1 import (
    CertificateSigningRequestCondition,
    CertificateSigningRequestStatus,
)
from lightkube.resources.certificates_v1 import (
    CertificateSigningRequest,
    CertificateSigningRequestApproval,
)
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, ServiceAccount

import containerd_helpers
import kube_helpers
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost import kubelet
from wmco_sandbox.winhost.core.disk import DirNode, VirtualDisk
from wmco_sandbox.winhost.core.machine import Machine
from wmco_sandbox.winhost.core.processes import CriRuntime, HostFacts
from wmco_sandbox.winhost.network.hns import HnsState

T = TypeVar("T")

FAST: dict[str, Any] = {
    "lease_renew_interval": 0.3,
    "status_interval": 0.5,
    "runtime_check_interval": 0.1,
    "backoff_base": 0.2,
    "pod_retry_interval": 0.5,
}
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
PKI = "c:\\var\\lib\\kubelet\\pki"
BOOTSTRAP_CA = "C:\\k\\bootstrap-ca.crt"
KUBELET_CA = "C:\\k\\kubelet-ca.crt"


def _apiserver_flag(plane: ControlPlane, name: str) -> str:
    pid = plane.processes()["kube-apiserver"]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return next(a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}="))


def kubelet_client_ca(plane: ControlPlane) -> bytes:
    """The CA that signed the API server's ``--kubelet-client-certificate`` (PEM).

    Found among the control plane's PKI files by signature, so it is right whether the control
    plane uses one CA for everything or a distinct kubelet-client CA.
    """
    cert_path = Path(_apiserver_flag(plane, "kubelet-client-certificate"))
    client = x509.load_pem_x509_certificate(cert_path.read_bytes())
    for candidate in sorted(cert_path.parent.glob("*.crt")):
        for ca in x509.load_pem_x509_certificates(candidate.read_bytes()):
            if ca.subject != client.issuer:
                continue
            try:
                client.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return ca.public_bytes(serialization.Encoding.PEM)
    raise AssertionError(f"no CA in {cert_path.parent} signed {cert_path}")


@dataclass
class FakeHost:
    """The kubelet's environment on a simulated machine; records the kubelet's log and exits."""

    facts: HostFacts
    machine: Machine = field(init=False)
    service: str = "kubelet"
    lines: list[str] = field(default_factory=list)
    exits: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.machine = containerd_helpers.new_machine(self.facts)

    @property
    def disk(self) -> VirtualDisk:
        return self.machine.disk

    @property
    def hns(self) -> HnsState:
        return self.machine.hns

    def read_file(self, path: str) -> bytes | None:
        return self.machine.disk.read_file(path)

    def write_file(self, path: str, data: bytes) -> None:
        parts = self.machine.disk.parse(path)
        self.machine.disk.mkdir(self.machine.disk.format(parts[:-1]))
        self.machine.disk.write_file(path, data)

    def files_in(self, directory: str) -> list[str]:
        node = self.machine.disk.get(directory)
        return [name for name, _ in node.children.values()] if isinstance(node, DirNode) else []

    def service_running(self, name: str) -> bool:
        return self.machine.scm.running(name)

    def cri(self) -> CriRuntime | None:
        return self.machine.cri()

    def firewall_allows(self, port: int) -> bool:
        return self.machine.firewall_allows(port)

    def log(self, line: str) -> None:
        self.lines.append(line)

    def exited(self, code: int, reason: str) -> None:
        self.exits.append((code, reason))

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def kubelet_conf(**overrides: Any) -> bytes:
    """A KubeletConfiguration shaped like WMCO's (JSON)."""
    conf: dict[str, Any] = {
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "rotateCertificates": True,
        "serverTLSBootstrap": False,
        "authentication": {
            "x509": {"clientCAFile": "C:\\k\\kubelet-ca.crt"},
            "anonymous": {"enabled": False},
        },
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "registerNode": True,
        "registerWithTaints": [{"key": "os", "value": "Windows", "effect": "NoSchedule"}],
        "containerRuntimeEndpoint": "npipe://./pipe/containerd-containerd",
        "resolvConf": "",
        "clusterDomain": "cluster.local",
        "clusterDNS": ["10.0.0.10"],
        "maxPods": 250,
        "evictionHard": {"nodefs.available": "10%", "imagefs.available": "15%"},
        "systemReserved": {"cpu": "500m", "ephemeral-storage": "1Gi", "memory": "2Gi"},
        "featureGates": {"RotateKubeletServerCertificate": True},
    }
    conf.update(overrides)
    return json.dumps(conf, indent=2).encode()


def bootstrap_kubeconfig(plane: ControlPlane, token: str, *, ca_by_path: bool) -> bytes:
    cluster: dict[str, Any] = {"server": plane.server}
    if ca_by_path:
        cluster["certificate-authority"] = BOOTSTRAP_CA
    else:
        cluster["certificate-authority-data"] = base64.b64encode(plane.ca_pem).decode()
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": "kubelet", "user": {"token": token}}],
            "contexts": [{"name": "kubelet", "context": {"cluster": "local", "user": "kubelet"}}],
            "current-context": "kubelet",
        }
    ).encode()


def wmco_argv(host: FakeHost, *extra: str) -> list[str]:
    return [
        "C:\\k\\kubelet.exe",
        "--config=C:\\k\\kubelet.conf",
        "--bootstrap-kubeconfig=C:\\k\\bootstrap-kubeconfig",
        "--kubeconfig=C:\\k\\kubeconfig",
        f"--cert-dir={PKI}\\",
        "--windows-service",
        "--node-labels=node.openshift.io/os_id=Windows",
        "--windows-priorityclass=ABOVE_NORMAL_PRIORITY_CLASS",
        "--v=2",
        "--node-ip",
        host.facts.address,
        *extra,
    ]


async def make_host(
    plane: ControlPlane,
    token: str,
    *,
    ca_by_path: bool = True,
    network: bool = True,
    address: str | None = None,
    **conf: Any,
) -> FakeHost:
    """A host as the operator leaves it: kubelet files, containerd running and, unless
    ``network=False``, the ovn-hybrid pod network (overlay HNS network and ``cni.conf``)."""
    host = FakeHost(facts=containerd_helpers.new_facts(address))
    host.write_file(BOOTSTRAP_CA, plane.ca_pem)
    host.write_file(KUBELET_CA, kubelet_client_ca(plane))
    host.write_file(
        "C:\\k\\bootstrap-kubeconfig", bootstrap_kubeconfig(plane, token, ca_by_path=ca_by_path)
    )
    host.write_file("C:\\k\\kubelet.conf", kubelet_conf(**conf))
    if network:
        containerd_helpers.configure_network(host.machine)
    await containerd_helpers.start_containerd(host.machine)
    return host


# ------------------------------------------------------------------------------------ helpers


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30) -> T:
    """The shared poller (``kube_helpers.eventually``) with this module's shorter defaults."""
    return await kube_helpers.eventually(check, what, timeout, poll=0.1)


NETWORK_NOT_READY = (
    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
    "message:Network plugin returns error: cni plugin not initialized"
)
"""The Ready condition's message of a Windows node whose CNI configuration does not load."""


async def default_service_account(kube: AsyncClient, namespace: str) -> None:
    """Wait for the namespace's ``default`` ServiceAccount (pods cannot be created before it)."""

    async def exists() -> bool:
        try:
            await kube.get(ServiceAccount, "default", namespace=namespace)
        except ApiError:
            return False
        return True

    await eventually(exists, f"the default ServiceAccount of {namespace}")


def csr_request(csr: CertificateSigningRequest) -> x509.CertificateSigningRequest:
    assert csr.spec is not None
    return x509.load_pem_x509_csr(base64.b64decode(csr.spec.request))


async def find_csr(kube: AsyncClient, signer: str, node_name: str) -> CertificateSigningRequest:
    cn = f"system:node:{node_name}"

    async def check() -> CertificateSigningRequest | None:
        async for csr in kube.list(CertificateSigningRequest, fields={"spec.signerName": signer}):
            subject = csr_request(csr).subject
            if subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn:
                return csr
        return None

    return await eventually(check, f"a {signer} CSR for {cn}")


async def approve(kube: AsyncClient, name: str) -> None:
    csr = await kube.get(CertificateSigningRequest, name)
    csr.status = CertificateSigningRequestStatus(
        conditions=[
            CertificateSigningRequestCondition(
                type="Approved",
                status="True",
                reason="TestApproved",
                message="approved by the test",
            )
        ]
    )
    approval = cast(
        CertificateSigningRequestApproval,
        CertificateSigningRequestApproval.from_dict(csr.to_dict()),
    )
    await kube.replace(approval, name)


def condition(node: Node, kind: str) -> Any:
    assert node.status is not None and node.status.conditions is not None
    return next(c for c in node.status.conditions if c.type == kind)


async def lease_renew_time(kube: AsyncClient, name: str) -> dt.datetime | None:
    try:
        lease = await kube.get(Lease, name, namespace="kube-node-lease")
    except ApiError:
        return None
    return lease.spec.renewTime if lease.spec else None


@dataclass
class Started:
    host: FakeHost
    kubelet: kubelet.SimulatedKubelet
    node_name: str


async def start(
    host: FakeHost, cleanup: list[kubelet.SimulatedKubelet], *extra: str, **options: Any
) -> kubelet.SimulatedKubelet:
    k = kubelet.SimulatedKubelet(wmco_argv(host, *extra), host, **{**FAST, **options})
    cleanup.append(k)
    await k.start()
    return k


async def bootstrapped(
    kube: AsyncClient, host: FakeHost, cleanup: list[kubelet.SimulatedKubelet], *extra: str
) -> Started:
    """Start a kubelet, approve its client CSR and wait for its Node."""
    k = await start(host, cleanup, *extra)
    assert k.node_name is not None
    csr = await find_csr(kube, CLIENT_SIGNER, k.node_name)
    assert csr.metadata is not None and csr.metadata.name is not None
    await approve(kube, csr.metadata.name)
    await asyncio.wait_for(k.registered.wait(), 30)
    return Started(host=host, kubelet=k, node_name=k.node_name)
