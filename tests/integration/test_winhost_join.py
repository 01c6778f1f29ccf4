"""A simulated host joins the real cluster driven by a script that only uses SSH and the API server.

No operator code is involved: the script sends literal PowerShell/sc.exe text (the forms of
docs/windows-surface.md), copies files over SFTP, mints a bootstrap token and approves the
kubelet's CSRs as cluster admin, and stands in for OVN-Kubernetes by setting the node's
hybrid-overlay subnet. It walks the whole ovn-hybrid sequence of windows-networking.md §1.2, so
the operator's tests cannot pass merely because the operator and the simulator agree with each
other: NotReady until the CNI configuration exists, the overlay network, the VIP endpoint,
kube-proxy, Ready, a pod with an overlay address, its log through the API server (refused while
the kubelet trusts the wrong client CA, served once the file holds the right one, with no
restart), NotReady again when ``cni.conf`` goes, and a running kubelet.exe that cannot be
overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets

import asyncssh
import pytest
from lightkube import AsyncClient
from lightkube.models.core_v1 import Container, PodSpec, Toleration
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, Pod, Secret
from lightkube.types import PatchType

import kubelet_helpers
from join_helpers import Shell, approve_pending, user_data
from kube_helpers import bootstrap_token_secret, eventually
from wmco_sandbox.controlplane import SERVICE_CIDR, ControlPlane, ControlPlaneError, free_port
from wmco_sandbox.winhost import kubelet as sim_kubelet
from wmco_sandbox.winhost.agents import hybridoverlay
from wmco_sandbox.winhost.host import WindowsHost, allocate_address

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIST_NETWORKS = "ConvertTo-Json -InputObject @(Get-HnsNetwork) -Depth 5 -Compress"
SUBNET = "10.132.8.0/24"
NOT_READY = kubelet_helpers.NETWORK_NOT_READY
HNS_PSM1 = (
    b"# The three functions the node needs (the simulator reads their declarations).\r\n"
    b"function Invoke-HNSRequest { param($Method, $Type, $Id, $Data) }\r\n"
    b"function New-HNSEndpoint { param($NetworkId, $Name) }\r\n"
    b"function Attach-HNSHostEndpoint { param($EndpointID, $CompartmentID) }\r\n"
)
CONTAINERD_CONF = b"""version = 2
root = "C:\\\\ProgramData\\\\containerd\\\\root"
state = "C:\\\\ProgramData\\\\containerd\\\\state"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "mcr.microsoft.com/oss/kubernetes/pause:3.10.2"

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runhcs-wcow-process"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runhcs-wcow-process]
  runtime_type = "io.containerd.runhcs.v1"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "C:\\\\k\\\\cni"
  conf_dir = "C:\\\\k\\\\cni\\\\config"
  max_conf_num = 1
"""


def cni_conf(subnet: str, management_ip: str) -> bytes:
    """The win-overlay configuration of windows-networking.md §1.3."""
    policies = [
        {"type": "OutBoundNAT", "settings": {"exceptionList": [SERVICE_CIDR]}},
        {"type": "SDNRoute", "settings": {"destinationPrefix": SERVICE_CIDR, "needEncap": True}},
        {"type": "ProviderAddress", "settings": {"providerAddress": management_ip}},
    ]
    return json.dumps(
        {
            "cniVersion": "0.2.0",
            "name": hybridoverlay.OVERLAY_NETWORK,
            "type": "win-overlay",
            "apiVersion": 2,
            "capabilities": {"portMappings": True, "dns": True},
            "ipam": {"type": "host-local", "subnet": subnet},
            "policies": [{"name": "EndpointPolicy", "value": p} for p in policies],
        }
    ).encode()


def ready_condition(node: Node) -> tuple[str, str]:
    for c in (node.status.conditions if node.status else None) or []:
        if c.type == "Ready":
            return c.status, c.message or ""
    return "Unknown", ""


async def test_a_script_gets_a_host_to_a_ready_node_with_pod_networking(
    control_plane: ControlPlane, kube: AsyncClient
) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    host = WindowsHost(
        address=allocate_address(),
        port=free_port(),
        kubelet_factory=sim_kubelet.factory_with(
            lease_renew_interval=1.0, status_interval=0.5, runtime_check_interval=0.2
        ),
    )
    host.faults.reboot_unreachable = 0.1
    await host.boot(user_data(key.export_public_key("openssh").decode().strip()))
    token_id, token_secret = secrets.token_hex(3), secrets.token_hex(8)
    await kube.create(bootstrap_token_secret(token_id, token_secret, "system:bootstrappers:script"))
    sh = Shell(host, key)
    node = ""
    pod_name = f"hello-{secrets.token_hex(3)}"
    try:
        await sh.run(
            "$ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name Containers"
        )
        await sh.run_dropping("Restart-Computer -Force")
        await host.wait_rebooted()
        node = (await sh.run("hostname")).strip().lower()
        for directory in (
            "C:\\k\\containerd",
            "C:\\k\\cni\\config",
            "C:\\Temp",
            "C:\\var\\lib\\kubelet\\pki",
            "C:\\var\\log\\kubelet",
            "C:\\var\\log\\containerd",
            "C:\\var\\log\\hybrid-overlay",
            "C:\\var\\log\\kube-proxy",
        ):
            await sh.run(f"New-Item -ItemType Directory -Force -Path '{directory}' | Out-Null")
        bootstrap = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": control_plane.server,
                        "certificate-authority": "C:\\k\\bootstrap-ca.crt",
                    },
                }
            ],
            "users": [{"name": "kubelet", "user": {"token": f"{token_id}.{token_secret}"}}],
            "contexts": [{"name": "kubelet", "context": {"cluster": "local", "user": "kubelet"}}],
            "current-context": "kubelet",
        }
        config = {
            "kind": "KubeletConfiguration",
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "rotateCertificates": True,
            "serverTLSBootstrap": True,
            "containerRuntimeEndpoint": "npipe://./pipe/containerd-containerd",
            "registerWithTaints": [{"key": "os", "value": "Windows", "effect": "NoSchedule"}],
            "authentication": {
                "x509": {"clientCAFile": "C:\\k\\kubelet-ca.crt"},
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
            },
            "authorization": {"mode": "Webhook"},
        }
        await sh.put(
            {
                "/C:/k/bootstrap-ca.crt": control_plane.ca_pem,
                # The mistake issue 8 found: the API server's SERVING CA as the kubelet's client CA.
                "/C:/k/kubelet-ca.crt": control_plane.ca_pem,
                "/C:/k/bootstrap-kubeconfig": json.dumps(bootstrap).encode(),
                "/C:/k/kubelet.conf": json.dumps(config).encode(),
                "/C:/k/kubelet.exe": b"MZ kubelet",
                "/C:/k/kube-proxy.exe": b"MZ kube-proxy",
                "/C:/k/hybrid-overlay-node.exe": b"MZ hybrid-overlay-node",
                "/C:/k/containerd/containerd.exe": b"MZ containerd",
                "/C:/k/containerd/containerd_conf.toml": CONTAINERD_CONF,
                "/C:/k/cni/win-overlay.exe": b"MZ win-overlay",
                "/C:/k/cni/host-local.exe": b"MZ host-local",
                "/C:/Temp/hns.psm1": HNS_PSM1,
            }
        )
        containerd = (
            "C:\\k\\containerd\\containerd.exe --config C:\\k\\containerd\\containerd_conf.toml "
            "--log-file C:\\var\\log\\containerd\\containerd.log --run-service --log-level info"
        )
        kubelet = (
            "C:\\k\\kubelet.exe --config=C:\\k\\kubelet.conf --bootstrap-kubeconfig=C:\\k\\bootstrap-kubeconfig "
            "--kubeconfig=C:\\k\\kubeconfig --cert-dir=C:\\var\\lib\\kubelet\\pki --windows-service "
            f"--node-ip={host.address}"
        )
        await sh.run(
            f"sc.exe create 'containerd' binPath= '{containerd}' start= auto; exit $LASTEXITCODE"
        )
        await sh.run(
            f"sc.exe create 'kubelet' binPath= '{kubelet}' start= auto depend= 'containerd'; exit $LASTEXITCODE"
        )
        await sh.run("sc.exe start 'kubelet'; exit $LASTEXITCODE")

        async def registered_not_ready() -> bool:
            await approve_pending(kube)
            with contextlib.suppress(Exception):
                got = await kube.get(Node, node)
                return ready_condition(got) == ("False", NOT_READY)
            return False

        await eventually(registered_not_ready, f"node {node} registered, NotReady without CNI", 90)

        hybrid = (
            f"C:\\k\\hybrid-overlay-node.exe --node {node} --bootstrap-kubeconfig=C:\\k\\kubeconfig "
            "--cert-dir=C:\\k\\cni\\config --cert-duration=24h --windows-service --logfile "
            "C:\\var\\log\\hybrid-overlay\\hybrid-overlay.log "
            f"--k8s-apiserver={control_plane.server} --k8s-cacert C:\\k\\bootstrap-ca.crt"
        )
        await sh.run(
            f"sc.exe create 'hybrid-overlay-node' binPath= '{hybrid}' start= auto depend= 'kubelet'; "
            "exit $LASTEXITCODE"
        )
        await sh.run("sc.exe start 'hybrid-overlay-node'; exit $LASTEXITCODE")

        # Its base network cuts the host's connectivity once (the SSH connection drops).
        async def base_network() -> bool:
            return host.machine.hns.network_named(hybridoverlay.BASE_NETWORK) is not None

        await eventually(base_network, "the base network", 20)
        sh.drop()
        # OVN-Kubernetes' part: the node's subnet of the hybrid cluster network.
        await kube.patch(
            Node,
            node,
            {"metadata": {"annotations": {hybridoverlay.SUBNET_ANNOTATION: SUBNET}}},
            patch_type=PatchType.MERGE,
        )
        overlay: dict[str, object] = {}

        async def overlay_network() -> bool:
            for network in json.loads(await sh.run(LIST_NETWORKS)):
                if network["Name"] == hybridoverlay.OVERLAY_NETWORK:
                    overlay.update(network)
                    return True
            return False

        await eventually(overlay_network, "the overlay HNS network", 30)
        subnets = overlay["Subnets"]
        assert isinstance(subnets, list) and subnets[0]["AddressPrefix"] == SUBNET
        await sh.put({"/C:/k/cni/config/cni.conf": cni_conf(SUBNET, str(overlay["ManagementIP"]))})
        created = json.loads(
            await sh.run(
                "$ErrorActionPreference = 'Stop'; Import-Module -DisableNameChecking 'C:\\Temp\\hns.psm1'; "
                f"$ep = New-HNSEndpoint -NetworkId '{overlay['ID']}' -Name 'VIPEndpoint'; "
                "Attach-HNSHostEndpoint -EndpointID $ep.ID -CompartmentID 1 | Out-Null; "
                "ConvertTo-Json -InputObject @($ep) -Depth 5 -Compress"
            )
        )
        source_vip = created[0]["IPAddress"]
        assert ipaddress.ip_address(source_vip) in ipaddress.ip_network(SUBNET)
        proxy_config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": "C:\\k\\kubeconfig"},
            "clusterCIDR": SUBNET,
            "featureGates": {"WinDSR": True, "WinOverlay": True},
            "hostnameOverride": node,
            "mode": "kernelspace",
            "winkernel": {
                "enableDSR": True,
                "networkName": hybridoverlay.OVERLAY_NETWORK,
                "sourceVip": source_vip,
            },
        }
        await sh.put({"/C:/k/kube-proxy.conf": json.dumps(proxy_config).encode()})
        await sh.run(
            "sc.exe create 'kube-proxy' binPath= 'C:\\k\\kube-proxy.exe --config=C:\\k\\kube-proxy.conf "
            "--windows-service' start= auto depend= 'hybrid-overlay-node'; exit $LASTEXITCODE"
        )
        await sh.run("sc.exe start 'kube-proxy'; exit $LASTEXITCODE")

        async def ready() -> bool:
            await approve_pending(kube)  # the serving CSR
            return ready_condition(await kube.get(Node, node))[0] == "True"

        await eventually(ready, f"node {node} Ready", 30)
        assert "4  RUNNING" in await sh.run("sc.exe query 'kube-proxy'; exit $LASTEXITCODE")

        # A pod on the node gets an address of the node's overlay subnet and writes a log.
        namespace = "default"
        await kube.create(
            Pod(
                metadata=ObjectMeta(name=pod_name, namespace=namespace),
                spec=PodSpec(
                    nodeName=node,
                    tolerations=[Toleration(key="os", value="Windows", effect="NoSchedule")],
                    containers=[
                        Container(
                            name="hello",
                            image="mcr.microsoft.com/windows/nanoserver:ltsc2022",
                            command=["cmd", "/c", "echo hello from the overlay"],
                        )
                    ],
                ),
            )
        )

        async def running() -> bool:
            pod = await kube.get(Pod, pod_name, namespace=namespace)
            return bool(pod.status and pod.status.phase == "Running" and pod.status.podIP)

        await eventually(running, "the pod to run", 30)
        pod = await kube.get(Pod, pod_name, namespace=namespace)
        assert pod.status is not None and pod.status.podIP is not None
        assert ipaddress.ip_address(pod.status.podIP) in ipaddress.ip_network(SUBNET)

        kubelet_pid = host.machine.scm.require("kubelet").pid
        # The kubelet refuses the API server's kubelet-client certificate (401), which kubectl
        # reports as "the server has asked for the client to provide credentials".
        with pytest.raises(ControlPlaneError) as refused:
            await asyncio.to_thread(control_plane.kubectl, "logs", "-n", namespace, pod_name)
        assert "provide credentials" in str(refused.value), refused.value
        # The right CA: the one that signs the API server's kubelet-client certificate. The
        # kubelet reads the file again; nothing restarts.
        await sh.put({"/C:/k/kubelet-ca.crt": control_plane.kubelet_client_ca_pem})
        logs = await asyncio.to_thread(control_plane.kubectl, "logs", "-n", namespace, pod_name)
        assert "hello from the overlay" in logs
        assert host.machine.scm.require("kubelet").pid == kubelet_pid

        # The CNI configuration goes: NotReady with the real message; it comes back: Ready.
        await sh.run("Remove-Item -LiteralPath 'C:\\k\\cni\\config\\cni.conf' -Force")

        async def not_ready_again() -> bool:
            return ready_condition(await kube.get(Node, node)) == ("False", NOT_READY)

        await eventually(not_ready_again, "NotReady after cni.conf was removed", 20)
        await sh.put({"/C:/k/cni/config/cni.conf": cni_conf(SUBNET, str(overlay["ManagementIP"]))})
        await eventually(ready, "Ready again once cni.conf is back", 20)

        # A running kubelet.exe cannot be overwritten.
        conn = await sh.connect()
        async with conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                async with sftp.open("/C:/k/kubelet.exe", "wb") as handle:
                    await handle.write(b"MZ another kubelet")
        assert host.machine.disk.read_file("C:\\k\\kubelet.exe") == b"MZ kubelet"
    finally:
        sh.drop()
        await host.stop()
        await kube.delete(Secret, f"bootstrap-token-{token_id}", namespace="kube-system")
        with contextlib.suppress(Exception):
            await kube.delete(Pod, pod_name, namespace="default", grace_period=0)
        if node:
            with contextlib.suppress(Exception):
                await kube.delete(Node, node)
