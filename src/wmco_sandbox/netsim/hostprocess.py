r"""A stand-in for a CNI shipped as a HostProcess DaemonSet (flannel from sig-windows-tools).

On plain Kubernetes, Calico, Antrea and sig-windows-tools' flannel put their Windows node agent in
a DaemonSet of HostProcess pods (``windows-networking.md`` §3): ``hostNetwork: true``, so the
kubelet starts them while the node is still NotReady; they create their HNS network, copy their
CNI binaries to ``C:\opt\cni\bin`` and write their configuration into ``C:\etc\cni\net.d``, and
only then does containerd report the network ready and the node turn Ready.

:func:`daemonset` is such a DaemonSet (real objects, scheduled by the real scheduler and run by
the simulated kubelet); :func:`flannel_behaviour` is what its container does on a simulated host,
registered by image in ``Machine.container_behaviours``. Like flanneld with ``--kube-subnet-mgr``
it takes the Node's ``spec.podCIDR`` (the controller-manager allocates it), creates the overlay
network ``flannel.4096`` with it, and writes a win-overlay configuration that names that network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from typing import Any, Final

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node

from wmco_sandbox.winhost.core.processes import (
    ContainerBehaviour,
    ContainerRequest,
    ProgramEnvironment,
)
from wmco_sandbox.winhost.network.hns import HnsSubnet

NAMESPACE: Final = "kube-flannel"
NAME: Final = "kube-flannel-ds-windows"
IMAGE_NAME: Final = "wmco-sandbox.local/flannel-hostprocess-standin"
IMAGE: Final = f"{IMAGE_NAME}:v0.28.10"
NETWORK_NAME: Final = "flannel.4096"
VNI: Final = 4096
BIN_DIR: Final = "C:\\opt\\cni\\bin"
CONF_FILE: Final = "C:\\etc\\cni\\net.d\\10-flannel.conflist"
SERVICE_CIDR_DEFAULT: Final = "10.0.0.0/24"


def namespace() -> dict[str, Any]:
    """The DaemonSet's namespace."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}


def daemonset() -> dict[str, Any]:
    """The HostProcess DaemonSet, shaped like sig-windows-tools' ``flannel-overlay.yml``."""
    labels = {"app": "flannel", "tier": "node", "os": "windows"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": "flannel", "os": "windows"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {
                        "windowsOptions": {
                            "hostProcess": True,
                            "runAsUserName": "NT AUTHORITY\\system",
                        }
                    },
                    "hostNetwork": True,
                    "nodeSelector": {"kubernetes.io/os": "windows"},
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        {
                            "name": "kube-flannel",
                            "image": IMAGE,
                            "command": ["pwsh"],
                            "args": ["-File", "/mounts/kube-flannel-windows/run.ps1"],
                            "env": [
                                {
                                    "name": "NODE_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                                }
                            ],
                        }
                    ],
                },
            },
        },
    }


def conflist(pod_cidr: str, node_ip: str, service_cidr: str) -> bytes:
    """The CNI configuration flannel's delegate ends up with: win-overlay on ``flannel.4096``."""
    config = {
        "cniVersion": "0.3.1",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "win-overlay",
                "apiVersion": 2,
                "capabilities": {"portMappings": True, "dns": True},
                "ipam": {"type": "host-local", "subnet": pod_cidr},
                "policies": [
                    {
                        "name": "EndpointPolicy",
                        "value": {
                            "type": "OutBoundNAT",
                            "settings": {"exceptions": [pod_cidr, service_cidr]},
                        },
                    },
                    {
                        "name": "EndpointPolicy",
                        "value": {
                            "type": "SDNRoute",
                            "settings": {"destinationPrefix": service_cidr, "needEncap": True},
                        },
                    },
                    {
                        "name": "EndpointPolicy",
                        "value": {
                            "type": "ProviderAddress",
                            "settings": {"providerAddress": node_ip},
                        },
                    },
                ],
            }
        ],
    }
    return json.dumps(config, indent=2).encode()


def flannel_behaviour(
    client: AsyncClient,
    *,
    service_cidr: str = SERVICE_CIDR_DEFAULT,
    poll: float = 0.5,
) -> ContainerBehaviour:
    """The container's work on its host; ``client`` stands in for the pod's service account."""

    async def run(request: ContainerRequest, env: ProgramEnvironment) -> list[str]:
        lines = [
            f"I1201 main.go:211] CLI flags config: kube-subnet-mgr=true node={request.node_name}"
        ]
        if not request.host_process:
            return [*lines, "E1201 main.go:330] flannel on Windows must run as a HostProcess pod"]
        while True:  # flanneld: "Waiting for the node's pod CIDR to be assigned"
            node = await client.get(Node, request.node_name)
            pod_cidr = node.spec.podCIDR if node.spec else None
            if pod_cidr:
                break
            await asyncio.sleep(poll)
        lines.append(f"I1201 kube.go:139] Node {request.node_name} has pod CIDR {pod_cidr}")
        network = ipaddress.ip_network(pod_cidr)
        gateway = str(network.network_address + 1)
        if env.hns.network_named(NETWORK_NAME) is None:
            env.hns.create_network(
                NETWORK_NAME,
                "Overlay",
                [HnsSubnet(pod_cidr, gateway, vsid=VNI)],
                management_ip=env.facts.address,
                dr_mac_address="0E-2A-"
                + "-".join(f"{b:02X}" for b in network.network_address.packed),
                persistent=False,
                policies=[{"Type": "HostRoute"}],
                created_by="flanneld",
            )
            lines.append(f"I1201 vxlan_windows.go:205] Created HNS network {NETWORK_NAME}")
        for binary in ("flannel.exe", "win-overlay.exe", "host-local.exe"):
            env.write_file(f"{BIN_DIR}\\{binary}", b"MZ" + binary.encode())
        env.write_file(CONF_FILE, conflist(pod_cidr, env.facts.address, service_cidr))
        lines.append(f"I1201 run.ps1] wrote {CONF_FILE}")
        return lines

    return run
