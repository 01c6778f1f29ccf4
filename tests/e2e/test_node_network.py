"""A configured node behaves like a real one: its network, its kubelet's API, its locked binaries.

Both network profiles, each in a sandbox of its own with the operator as its own process:

* ``ovn-hybrid`` (OpenShift with OVN-Kubernetes' hybrid overlay): a listed host becomes a Ready
  node whose pods get overlay addresses; ``kubectl logs`` reads a Windows pod's log through the
  kubelet; deleting ``cni.conf`` turns the node NotReady with the real message and restoring it
  Ready again; a running ``kubelet.exe`` cannot be overwritten over SFTP.
* ``hostprocess`` (plain Kubernetes): the operator installs neither hybrid-overlay-node nor
  kube-proxy; the node turns Ready only once the cluster's HostProcess CNI DaemonSet (the
  sandbox's flannel stand-in) has run on it, and pods get addresses of the node's pod CIDR.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
from collections.abc import AsyncIterator

import asyncssh
import pytest
import pytest_asyncio
from lightkube.models.core_v1 import Container, PodSpec, Toleration
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import DaemonSet
from lightkube.resources.core_v1 import Node, Pod

import kubelet_helpers
from wmco import names
from wmco_sandbox import cloud
from wmco_sandbox.netsim import hostprocess
from wmco_sandbox.sandbox import HOSTPROCESS, OVN_HYBRID, Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NOT_READY = kubelet_helpers.NETWORK_NOT_READY
CNI_CONF = "C:\\k\\cni\\config\\cni.conf"


def ready(node: Node) -> tuple[str, str]:
    for c in (node.status.conditions if node.status else None) or []:
        if c.type == "Ready":
            return c.status, c.message or ""
    return "Unknown", ""


async def configured_node(sandbox: Sandbox, sim: cloud.SimHost) -> Node:
    async def done() -> bool:
        for node in await sandbox.windows_nodes():
            annotations = (node.metadata.annotations if node.metadata else None) or {}
            if (
                node.metadata
                and node.metadata.name == sim.host.facts.hostname
                and ready(node)[0] == "True"
                and names.VERSION_ANNOTATION in annotations
            ):
                return True
        return False

    await sandbox.wait_for(done, f"{sim.host.facts.hostname} to become a configured node", 240)
    return await sandbox.kube.get(Node, sim.host.facts.hostname)


async def run_pod(sandbox: Sandbox, node: str, *, text: str) -> Pod:
    """A Windows pod pinned to ``node`` that writes ``text`` to its log; wait until it runs."""
    name = f"hello-{secrets.token_hex(3)}"
    await sandbox.kube.create(
        Pod(
            metadata=ObjectMeta(name=name, namespace="default"),
            spec=PodSpec(
                nodeName=node,
                tolerations=[Toleration(key="os", value="Windows", effect="NoSchedule")],
                containers=[
                    Container(
                        name="hello",
                        image="mcr.microsoft.com/windows/nanoserver:ltsc2022",
                        command=["cmd", "/c", f"echo {text}"],
                    )
                ],
            ),
        )
    )

    async def running() -> bool:
        pod = await sandbox.kube.get(Pod, name, namespace="default")
        return bool(pod.status and pod.status.phase == "Running" and pod.status.podIP)

    await sandbox.wait_for(running, f"pod {name} to run", 60)
    return await sandbox.kube.get(Pod, name, namespace="default")


@pytest_asyncio.fixture(loop_scope="function")
async def ovn_sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    async with Sandbox(tmp_path_factory.mktemp("ovn"), network_profile=OVN_HYBRID) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="function")
async def hostprocess_sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    async with Sandbox(tmp_path_factory.mktemp("hp"), network_profile=HOSTPROCESS) as running:
        yield running


async def test_ovn_hybrid_node_network_logs_and_locked_binaries(ovn_sandbox: Sandbox) -> None:
    sandbox = ovn_sandbox
    (sim,) = await sandbox.add_listed_hosts(1)
    node = await configured_node(sandbox, sim)
    assert node.metadata is not None and node.metadata.name
    name = node.metadata.name
    subnet = (node.metadata.annotations or {})["k8s.ovn.org/hybrid-overlay-node-subnet"]
    machine = sim.host.machine
    for service in ("containerd", "kubelet", "hybrid-overlay-node", "kube-proxy"):
        assert machine.scm.running(service), service

    pod = await run_pod(sandbox, name, text="hello over the hybrid overlay")
    assert pod.status is not None and pod.status.podIP and pod.metadata and pod.metadata.name
    assert ipaddress.ip_address(pod.status.podIP) in ipaddress.ip_network(subnet)
    logs = await asyncio.to_thread(
        sandbox.plane.kubectl, "logs", "-n", "default", pod.metadata.name
    )
    assert "hello over the hybrid overlay" in logs

    # cni.conf deleted on the host: NotReady with the real message; put back: Ready.
    saved = machine.disk.read_file(CNI_CONF)
    assert saved is not None
    result = await sim.host.run(f"Remove-Item -LiteralPath '{CNI_CONF}' -Force")
    assert result.code == 0, result.stderr

    async def not_ready() -> bool:
        return ready(await sandbox.kube.get(Node, name)) == ("False", NOT_READY)

    await sandbox.wait_for(not_ready, "NotReady once cni.conf is gone", 60)
    machine.disk.write_file(CNI_CONF, saved)

    async def ready_again() -> bool:
        return ready(await sandbox.kube.get(Node, name))[0] == "True"

    await sandbox.wait_for(ready_again, "Ready once cni.conf is back", 60)

    # Overwriting the running kubelet.exe over SFTP, with the operator's own key, is refused.
    key = asyncssh.import_private_key(sandbox.private_key_pem)
    kubelet = machine.disk.read_file("C:\\k\\kubelet.exe")
    async with (
        asyncssh.connect(
            sim.host.address,
            sim.host.port,
            username="Administrator",
            client_keys=[key],
            known_hosts=([sim.host.host_public_key], [], []),
            agent_path=None,
            config=None,
        ) as conn,
        conn.start_sftp_client() as sftp,
    ):
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            async with sftp.open("/C:/k/kubelet.exe", "wb") as handle:
                await handle.write(b"MZ not the kubelet")
    assert machine.disk.read_file("C:\\k\\kubelet.exe") == kubelet
    assert machine.scm.running("kubelet")


async def test_hostprocess_node_gets_its_network_from_the_cni_daemonset(
    hostprocess_sandbox: Sandbox,
) -> None:
    sandbox = hostprocess_sandbox
    (sim,) = await sandbox.add_listed_hosts(1)
    node = await configured_node(sandbox, sim)
    assert node.metadata is not None and node.metadata.name and node.spec
    name = node.metadata.name
    machine = sim.host.machine
    # Ours: containerd and the kubelet only (with windows_exporter); the CNI is the cluster's.
    for service in ("hybrid-overlay-node", "kube-proxy"):
        assert machine.scm.get(service) is None, f"{service} must not be installed"
    assert machine.scm.running("containerd") and machine.scm.running("kubelet")
    assert machine.disk.get(CNI_CONF) is None
    assert machine.disk.get(hostprocess.CONF_FILE) is not None
    network = machine.hns.network_named(hostprocess.NETWORK_NAME)
    assert network is not None and network.created_by == "flanneld"
    daemonset = await sandbox.kube.get(DaemonSet, hostprocess.NAME, namespace=hostprocess.NAMESPACE)
    assert daemonset.status is not None and daemonset.status.numberReady >= 1
    # The flannel pod ran on the node while it was NotReady (it is hostNetwork).
    flannel = [
        p
        async for p in sandbox.kube.list(Pod, namespace=hostprocess.NAMESPACE)
        if p.spec and p.spec.nodeName == name
    ]
    assert flannel and flannel[0].status and flannel[0].status.phase == "Running"
    assert flannel[0].status.podIP == sim.host.address

    pod = await run_pod(sandbox, name, text="hello over flannel")
    assert pod.status is not None and pod.status.podIP and node.spec.podCIDR
    assert ipaddress.ip_address(pod.status.podIP) in ipaddress.ip_network(node.spec.podCIDR)
