"""hybrid-overlay-node on a simulated host whose kubelet joined the real control plane.

A script (no operator code) sets the host up over SSH the way the operator does: Containers
feature and reboot, the kubelet service, then the hybrid-overlay-node service with WMCO's command
line. The test, as cluster admin, stands in for OVN-Kubernetes and sets the node's
``k8s.ovn.org/hybrid-overlay-node-subnet``. It checks that hybrid-overlay makes no overlay
network until then (after having seen the Node), makes it with that subnet, publishes the DR MAC
annotation, re-creates the network when the subnet changes, and again after a reboot (the
persistent base network stays, so the reboot's start drops no connection).
"""

from __future__ import annotations

import contextlib
import json
import secrets

import asyncssh
import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node, Secret
from lightkube.types import PatchType

from join_helpers import Shell, approve_pending, user_data
from kube_helpers import bootstrap_token_secret, eventually
from wmco_sandbox.controlplane import ControlPlane, free_port
from wmco_sandbox.winhost import kubelet as sim_kubelet
from wmco_sandbox.winhost.agents import hybridoverlay
from wmco_sandbox.winhost.host import WindowsHost, allocate_address

pytestmark = pytest.mark.integration

SUBNET = hybridoverlay.SUBNET_ANNOTATION
DRMAC = hybridoverlay.DRMAC_ANNOTATION
LIST_NETWORKS = "ConvertTo-Json -InputObject @(Get-HnsNetwork) -Depth 5 -Compress"


async def join_kubelet(sh: Shell, control_plane: ControlPlane, token: str) -> None:
    host = sh.host
    for directory in ("C:\\k", "C:\\var\\lib\\kubelet\\pki", "C:\\var\\log\\hybrid-overlay"):
        await sh.run(f"New-Item -ItemType Directory -Force -Path '{directory}' | Out-Null")
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": control_plane.server, "certificate-authority": "C:\\k\\bootstrap-ca.crt"}}],
        "users": [{"name": "kubelet", "user": {"token": token}}],
        "contexts": [{"name": "kubelet", "context": {"cluster": "local", "user": "kubelet"}}],
        "current-context": "kubelet",
    }  # fmt: skip
    config = {
        "kind": "KubeletConfiguration", "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "rotateCertificates": True, "containerRuntimeEndpoint": "npipe://./pipe/containerd-containerd",
        "authentication": {"x509": {"clientCAFile": "C:\\k\\bootstrap-ca.crt"}},
    }  # fmt: skip
    await sh.put(
        {
            "/C:/k/bootstrap-ca.crt": control_plane.ca_pem,
            "/C:/k/bootstrap-kubeconfig": json.dumps(kubeconfig).encode(),
            "/C:/k/kubelet.conf": json.dumps(config).encode(),
            "/C:/k/kubelet.exe": b"MZ kubelet",
            "/C:/k/hybrid-overlay-node.exe": b"MZ hybrid-overlay",
        }
    )
    kubelet = (
        "C:\\k\\kubelet.exe --config=C:\\k\\kubelet.conf --bootstrap-kubeconfig=C:\\k\\bootstrap-kubeconfig "
        "--kubeconfig=C:\\k\\kubeconfig --cert-dir=C:\\var\\lib\\kubelet\\pki --windows-service "
        f"--node-ip={host.address}"
    )
    await sh.run(f"sc.exe create 'kubelet' binPath= '{kubelet}' start= auto; exit $LASTEXITCODE")
    await sh.run("sc.exe start 'kubelet'; exit $LASTEXITCODE")


async def test_hybrid_overlay_follows_the_node_subnet(
    control_plane: ControlPlane, kube: AsyncClient
) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    host = WindowsHost(
        address=allocate_address(), port=free_port(),
        kubelet_factory=sim_kubelet.factory_with(lease_renew_interval=1.0, status_interval=1.0),
    )  # fmt: skip
    host.faults.reboot_unreachable = 0.1
    host.machine.program_factories["hybrid-overlay-node"] = hybridoverlay.factory_with(
        base_delay=0.2, retry_interval=0.3
    )
    await host.boot(user_data(key.export_public_key("openssh").decode().strip()))
    token_id, token_secret = secrets.token_hex(3), secrets.token_hex(8)
    await kube.create(bootstrap_token_secret(token_id, token_secret, "system:bootstrappers:ho"))
    sh = Shell(host, key)
    hns = host.machine.hns
    try:
        await sh.run(
            "$ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name Containers"
        )
        await sh.run_dropping("Restart-Computer -Force")
        await host.wait_rebooted()
        node = (await sh.run("hostname")).strip().lower()
        await join_kubelet(sh, control_plane, f"{token_id}.{token_secret}")

        async def registered() -> bool:
            await approve_pending(kube)
            try:
                await kube.get(Node, node)
            except Exception:
                return False
            return (
                host.machine.disk.get("C:\\var\\lib\\kubelet\\pki\\kubelet-client-current.pem")
                is not None
            )

        await eventually(registered, f"node {node} to register", 90)
        command = (
            f"C:\\k\\hybrid-overlay-node.exe --node {node} --bootstrap-kubeconfig=C:\\k\\kubeconfig "
            "--cert-dir=C:\\k\\cni\\config --cert-duration=24h --windows-service --logfile "
            "C:\\var\\log\\hybrid-overlay\\hybrid-overlay.log "
            f"--k8s-apiserver={control_plane.server} --k8s-cacert C:\\k\\bootstrap-ca.crt"
        )
        await sh.run(
            f"sc.exe create 'hybrid-overlay-node' binPath= '{command}' start= auto depend= 'kubelet'; "
            "exit $LASTEXITCODE"
        )
        blips = hns.blips
        await sh.run("sc.exe start 'hybrid-overlay-node'; exit $LASTEXITCODE")

        async def base_made() -> bool:
            return hns.network_named(hybridoverlay.BASE_NETWORK) is not None

        await eventually(base_made, "the base network", 10)
        assert hns.blips == blips + 1  # the first overlay network cut connectivity
        sh.drop()
        process = host.machine.scm.require("hybrid-overlay-node").process
        assert isinstance(process, hybridoverlay.SimulatedHybridOverlay)

        async def saw_node() -> bool:
            return process.node_events >= 1

        await eventually(saw_node, "hybrid-overlay to see its Node", 20)
        assert hns.network_named(hybridoverlay.OVERLAY_NETWORK) is None
        assert DRMAC not in ((await kube.get(Node, node)).metadata.annotations or {})  # type: ignore[union-attr]

        async def overlay_with(prefix: str) -> bool:
            net = hns.network_named(hybridoverlay.OVERLAY_NETWORK)
            if net is None or net.subnets[0].address_prefix != prefix:
                return False
            got = await kube.get(Node, node)
            return (got.metadata.annotations or {}).get(DRMAC) == net.dr_mac_address  # type: ignore[union-attr]

        for prefix in ("10.132.3.0/24", "10.132.4.0/24"):
            await kube.patch(
                Node, node, {"metadata": {"annotations": {SUBNET: prefix}}},
                patch_type=PatchType.MERGE,
            )  # fmt: skip
            await eventually(lambda p=prefix: overlay_with(p), f"the overlay network {prefix}", 20)
        networks = {n["Name"]: n for n in json.loads(await sh.run(LIST_NETWORKS))}
        overlay = networks[hybridoverlay.OVERLAY_NETWORK]
        assert overlay["Subnets"][0]["AddressPrefix"] == "10.132.4.0/24"
        assert overlay["Subnets"][0]["GatewayAddress"] == "10.132.4.1"
        assert overlay["Subnets"][0]["Policies"] == [{"Type": "VSID", "VSID": 4097}]
        assert overlay["Flags"] == 8 and overlay["ManagementIP"] == host.address
        base_id = networks[hybridoverlay.BASE_NETWORK]["ID"]
        logfile = host.machine.disk.read_file("C:\\var\\log\\hybrid-overlay\\hybrid-overlay.log")
        assert (
            logfile is not None
            and b"Creating overlay network 'OVNKubernetesHybridOverlayNetwork' (address prefix 10.132.4.0/24)"
            in logfile
        )

        blips = hns.blips
        await sh.run_dropping("Restart-Computer -Force")
        await host.wait_rebooted()
        await eventually(
            lambda: overlay_with("10.132.4.0/24"), "the overlay network after reboot", 60
        )
        base = hns.network_named(hybridoverlay.BASE_NETWORK)
        assert base is not None and base.id == base_id and hns.blips == blips
        assert (await sh.run("hostname")).strip().lower() == node
    finally:
        sh.drop()
        await host.stop()
        await kube.delete(Secret, f"bootstrap-token-{token_id}", namespace="kube-system")
        with contextlib.suppress(Exception):
            await kube.delete(Node, host.facts.hostname)
