"""A configured host that reboots on its own comes back by itself, with the operator stopped.

The operator configures a strict simulated host on the real control plane (each network
profile), a pod runs on the node, then the operator is STOPPED and the host reboots on its own
(as Windows Update would). From then on no SSH command reaches the host (its command log stays as
it was), yet: every managed service runs again (the SCM starts the automatic services in
dependency order), the kubelet keeps its Node and its client certificate (no new CSR) and renews
its Lease, and the pod runs in a sandbox made after the reboot, its new address in the API.

``ovn-hybrid``: the overlay network and every endpoint vanished with the reboot;
hybrid-overlay-node makes the network again from the node's subnet annotation, and kube-proxy,
having waited for it, creates its sourceVip endpoint with the address of its configuration.
``hostprocess``: the cluster's CNI DaemonSet pod (the sandbox's flannel stand-in) runs again on
the node and makes its non-persistent network again; the pod's sandbox follows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.models.core_v1 import Container, PodSpec, Toleration
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import DaemonSet
from lightkube.resources.certificates_v1 import CertificateSigningRequest
from lightkube.resources.core_v1 import Namespace, Node, Pod
from lightkube.types import PatchType
from test_operator import World, open_world

import kubelet_helpers
from kube_helpers import eventually
from wmco import names
from wmco.settings import NetworkProfile
from wmco.windows import services
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.netsim import hostprocess
from wmco_sandbox.winhost import containerd
from wmco_sandbox.winhost import kubelet as sim_kubelet
from wmco_sandbox.winhost.agents import hybridoverlay, kubeproxy
from wmco_sandbox.winhost.containerd import sandboxes as cri_sandboxes
from wmco_sandbox.winhost.host import WindowsHost, allocate_address

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

KUBE_PROXY_CONF = "C:\\k\\kube-proxy.conf"
CLIENT_CERT = "C:\\var\\lib\\kubelet\\pki\\kubelet-client-current.pem"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"


async def boot_host(world: World) -> WindowsHost:
    """A host like ``World.boot_host``'s, with kube-proxy's 10 s Overlay settle shortened."""
    host = WindowsHost(
        address=allocate_address(),
        port=world.ssh_port,
        kubelet_factory=sim_kubelet.factory_with(
            lease_renew_interval=1.0, status_interval=1.0, pod_retry_interval=1.0
        ),
    )
    host.faults.reboot_unreachable = 0.2
    host.machine.program_factories["kube-proxy"] = kubeproxy.factory_with(overlay_settle=0.5)
    world.hosts.append(host)
    await host.boot(await world.user_data())
    return host


async def run_pod(kube: AsyncClient, namespace: str, node: str) -> Pod:
    name = f"survivor-{secrets.token_hex(3)}"
    await kube.create(
        Pod(
            metadata=ObjectMeta(name=name, namespace=namespace),
            spec=PodSpec(
                nodeName=node,
                tolerations=[Toleration(key="os", value="Windows", effect="NoSchedule")],
                containers=[
                    Container(
                        name="main",
                        image="mcr.microsoft.com/windows/nanoserver:ltsc2022",
                        command=["cmd", "/c", "echo still here"],
                    )
                ],
            ),
        )
    )

    async def running() -> Pod | None:
        pod = await kube.get(Pod, name, namespace=namespace)
        return pod if pod.status and pod.status.phase == "Running" and pod.status.podIP else None

    return await eventually(running, f"pod {name} to run on {node}", 90)


def sandboxes(host: WindowsHost) -> dict[str, cri_sandboxes.Sandbox]:
    factory = host.machine.program_factories["containerd"]
    assert isinstance(factory, containerd.ContainerdFactory)
    return factory.state.sandboxes


async def client_csrs_since(kube: AsyncClient, node: str, since: dt.datetime) -> list[str]:
    return [
        csr.metadata.name or ""
        async for csr in kube.list(CertificateSigningRequest)
        if csr.metadata
        and csr.metadata.creationTimestamp
        and csr.metadata.creationTimestamp >= since
        and csr.spec.signerName == CLIENT_SIGNER
        and node in (csr.spec.username or "")
    ]


async def reboot_alone_and_recover(
    world: World, host: WindowsHost, namespace: str, profile: NetworkProfile
) -> tuple[Pod, Pod, int]:
    """Configure, run a pod, stop the operator, reboot; wait for the recovery.

    Returns:
        The pod before and after, and how many commands the host had run over SSH.
    """
    kube = world.kube
    await world.list_instances({host.address: "username=Administrator"})
    node = await world.wait_ready(host, timeout=180)
    assert node.metadata is not None and node.metadata.name
    name, uid = node.metadata.name, node.metadata.uid
    await kubelet_helpers.default_service_account(kube, namespace)
    before = await run_pod(kube, namespace, name)
    assert before.metadata is not None

    # The operator is stopped: its task is over, and from here on no command reaches the host.
    task = world.manager_task
    assert task is not None
    await world.stop_operator()
    assert world.manager_task is None and task.done()
    commands = len(host.command_log)
    certificate = host.machine.disk.read_file(CLIENT_CERT)
    assert certificate is not None
    scm = host.machine.scm
    declared = set(services.ALL_MANAGED_SERVICES) - set(services.foreign_services(profile))

    async def services_up() -> bool:
        return all(scm.running(svc) for svc in declared)

    # A service may be between an exit and its recovery restart (the SCM's failure actions).
    await eventually(services_up, "every managed service to run before the reboot", 60)
    pids = {svc.name: svc.pid for svc in scm.processes()}
    boots = host.boot_count

    rebooted_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    await host.reboot()  # its own reboot (Restart-Computer from the console), not the operator's
    assert host.boot_count == boots + 1

    await eventually(services_up, "every managed service to run again", 60)
    assert all(scm.require(svc).pid != pids[svc] for svc in declared), "each one started anew"
    assert scm.boot_failures == {}

    async def kubelet_alive() -> bool:
        renewed = await kubelet_helpers.lease_renew_time(kube, name)
        return renewed is not None and renewed > rebooted_at

    await eventually(kubelet_alive, "the kubelet to renew its Lease after the reboot", 60)

    async def ready() -> Node | None:
        current = await kube.get(Node, name)
        return current if kubelet_helpers.condition(current, "Ready").status == "True" else None

    after_node = await eventually(ready, "the Node to be Ready after the reboot", 60)
    assert after_node.metadata is not None and after_node.metadata.uid == uid, "it kept its Node"
    assert host.machine.disk.read_file(CLIENT_CERT) == certificate
    assert await client_csrs_since(kube, name, rebooted_at) == []

    pod_uid = before.metadata.uid or ""

    async def pod_back() -> Pod | None:
        sandbox = sandboxes(host).get(pod_uid)
        if sandbox is None or sandbox.started_at < host.machine.boot_time:
            return None
        pod = await kube.get(Pod, before.metadata.name or "", namespace=namespace)  # type: ignore[union-attr]
        running = pod.status and pod.status.phase == "Running"
        return pod if running and pod.status.podIP == sandbox.ip else None  # type: ignore[union-attr]

    try:
        after = await eventually(pod_back, "the pod to run in a sandbox made after the reboot", 90)
    except BaseException:
        print("kubelet:", *host.kubelet_log[-30:], sep="\n")
        print("containerd:", *host.machine.service_log("containerd")[-15:], sep="\n")
        raise
    assert len(host.command_log) == commands, "the host recovered without a single SSH command"
    return before, after, commands


@pytest.fixture
async def ovn_world(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path
) -> AsyncIterator[World]:
    async with open_world(control_plane, kube, tmp_path) as opened:
        yield opened


async def test_ovn_hybrid_host_recovers_from_its_own_reboot(
    ovn_world: World, namespace: str
) -> None:
    world = ovn_world
    host = await boot_host(world)
    hns = host.machine.hns
    # What the configured host had before: the overlay network and the VIP endpoint.
    await world.list_instances({host.address: "username=Administrator"})
    await world.wait_ready(host, timeout=180)
    network = hns.network_named(names.HYBRID_OVERLAY_NETWORK)
    assert network is not None
    vip = yaml.safe_load(host.machine.disk.read_file(KUBE_PROXY_CONF) or b"")["winkernel"][
        "sourceVip"
    ]
    assert any(e.ip_address == vip for e in hns.endpoints_of(network.id))
    old_network, old_endpoints = network.id, set(hns.endpoints)
    # The operator reserved the sourceVip in host-local's state: no pod may be given it.
    reservation = f"C:\\var\\lib\\cni\\networks\\{names.HYBRID_OVERLAY_NETWORK}\\{vip}"
    assert host.machine.disk.read_file(reservation) == b"VIPEndpoint\r\neth0"
    config = host.machine.disk.read_file(KUBE_PROXY_CONF)

    before, after, commands = await reboot_alone_and_recover(
        world, host, namespace, NetworkProfile.OVN_HYBRID
    )
    assert before.status is not None and after.status is not None
    assert vip not in (before.status.podIP, after.status.podIP)

    node = await world.kube.get(Node, host.facts.hostname)
    subnet = (node.metadata.annotations or {})[hybridoverlay.SUBNET_ANNOTATION]  # type: ignore[union-attr]

    async def network_and_vip_back() -> list[str] | None:
        back = hns.network_named(names.HYBRID_OVERLAY_NETWORK)
        if back is None or back.subnets[0].address_prefix != subnet:
            return None
        return [e.id for e in hns.endpoints_of(back.id) if e.ip_address == vip] or None

    source = await eventually(
        network_and_vip_back, "the overlay network and kube-proxy's sourceVip endpoint", 60
    )
    back = hns.network_named(names.HYBRID_OVERLAY_NETWORK)
    assert back is not None and back.id != old_network, "the network was made anew"
    assert back.created_by == "hybrid-overlay-node"
    assert len(source) == 1 and source[0] not in old_endpoints
    proxy = host.machine.scm.require("kube-proxy").process
    assert isinstance(proxy, kubeproxy.SimulatedKubeProxy)
    assert proxy.running and proxy.source_vip_created == 1
    # Its configuration is the one the operator wrote before the reboot; nobody touched the host.
    assert host.machine.disk.read_file(KUBE_PROXY_CONF) == config
    assert len(host.command_log) == commands

    # The operator is back and configures the host again: it adopts kube-proxy's endpoint rather
    # than making a new VIPEndpoint, so kube-proxy's configuration stays as it is.
    await world.start_operator()
    await world.kube.patch(
        Node,
        host.facts.hostname,
        {"metadata": {"annotations": {names.VERSION_ANNOTATION: None}}},
        patch_type=PatchType.MERGE,
    )
    await world.wait_ready(host, timeout=120)
    assert len(host.command_log) > commands, "the operator did run a pass over the host"
    assert host.machine.disk.read_file(KUBE_PROXY_CONF) == config
    assert [e.id for e in hns.endpoints_of(back.id) if e.ip_address == vip] == source
    assert not [e for e in hns.endpoints.values() if e.name == names.VIP_ENDPOINT]


@pytest.fixture
async def hostprocess_world(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path
) -> AsyncIterator[World]:
    manifests = (hostprocess.namespace(), hostprocess.daemonset())
    await kube.create(Namespace.from_dict(manifests[0]))  # type: ignore[call-overload]
    await kube.create(DaemonSet.from_dict(manifests[1]))  # type: ignore[call-overload]
    try:
        async with open_world(
            control_plane, kube, tmp_path, network_profile=NetworkProfile.HOSTPROCESS
        ) as opened:
            yield opened
    finally:
        with contextlib.suppress(ApiError):
            await kube.delete(Namespace, hostprocess.NAMESPACE)


async def test_hostprocess_host_recovers_from_its_own_reboot(
    hostprocess_world: World, namespace: str
) -> None:
    world = hostprocess_world
    host = WindowsHost(
        address=allocate_address(),
        port=world.ssh_port,
        kubelet_factory=sim_kubelet.factory_with(
            lease_renew_interval=1.0, status_interval=1.0, pod_retry_interval=1.0
        ),
    )
    host.faults.reboot_unreachable = 0.2
    host.machine.container_behaviours[hostprocess.IMAGE_NAME] = hostprocess.flannel_behaviour(
        world.kube, service_cidr=world.settings.service_cidr, poll=0.3
    )
    world.hosts.append(host)
    await host.boot(await world.user_data())
    hns = host.machine.hns

    await world.list_instances({host.address: "username=Administrator"})
    await world.wait_ready(host, timeout=180)
    network = hns.network_named(hostprocess.NETWORK_NAME)
    assert network is not None and network.created_by == "flanneld"
    assert host.machine.scm.get(services.KUBE_PROXY) is None

    before, after, commands = await reboot_alone_and_recover(
        world, host, namespace, NetworkProfile.HOSTPROCESS
    )

    back = hns.network_named(hostprocess.NETWORK_NAME)
    assert back is not None and back.id != network.id, "flannel made its network anew"
    assert after.status is not None and after.status.podIP
    node = await world.kube.get(Node, host.facts.hostname)
    assert node.spec is not None and node.spec.podCIDR
    assert back.subnets[0].address_prefix == node.spec.podCIDR
    assert before.status is not None and before.status.podIP
    assert len(host.command_log) == commands
