"""The cluster side of OVN-Kubernetes' hybrid overlay, as far as Windows nodes need it.

On OpenShift with OVN-Kubernetes, the cluster network operator's ``networks.operator.openshift.io``
``cluster`` object enables the hybrid overlay (``spec.defaultNetwork.ovnKubernetesConfig.
hybridOverlayConfig.hybridClusterNetwork``), and ovnkube's cluster manager gives every node
labelled ``kubernetes.io/os=windows`` one subnet of that network in the annotation
``k8s.ovn.org/hybrid-overlay-node-subnet`` (``windows-networking.md`` §1.1, §1.2 step 3). The
Windows host's ``hybrid-overlay-node`` waits for that annotation to build its HNS network.

This module is the sandbox's stand-in for those two pieces: :func:`install_network_config` puts
the CRD and the ``cluster`` object in place (so the operator's ``auto`` network profile finds an
OVN cluster with a hybrid overlay), and :class:`HybridOverlaySubnetAllocator` annotates Windows
nodes. It allocates the lowest free subnet, keeps what is already annotated (so a restarted
sandbox, or a node that re-registers, keeps its subnet) and frees a subnet when its node goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Iterator
from typing import Any, Final, cast

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_global_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from wmco_sandbox.machineapi import loop

log = logging.getLogger(__name__)

FIELD_MANAGER: Final = "wmco-sandbox-ovnkube"
SUBNET_ANNOTATION: Final = "k8s.ovn.org/hybrid-overlay-node-subnet"
DRMAC_ANNOTATION: Final = "k8s.ovn.org/hybrid-overlay-distributed-router-gateway-mac"
WINDOWS_OS: Final = "windows"
HYBRID_CLUSTER_NETWORK: Final = "10.132.0.0/14"
HOST_PREFIX: Final = 23

NetworkOperatorConfig = create_global_resource(
    "operator.openshift.io", "v1", "Network", "networks", verbs=None
)

_CRD: Final[dict[str, Any]] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "networks.operator.openshift.io"},
    "spec": {
        "group": "operator.openshift.io",
        "names": {
            "kind": "Network",
            "listKind": "NetworkList",
            "plural": "networks",
            "singular": "network",
        },
        "scope": "Cluster",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def network_config(
    *,
    cluster_network: str,
    service_network: str,
    hybrid_cidr: str = HYBRID_CLUSTER_NETWORK,
    host_prefix: int = HOST_PREFIX,
) -> dict[str, Any]:
    """The ``networks.operator.openshift.io`` ``cluster`` object of an OVN cluster with a hybrid overlay."""
    return {
        "apiVersion": "operator.openshift.io/v1",
        "kind": "Network",
        "metadata": {"name": "cluster"},
        "spec": {
            "clusterNetwork": [{"cidr": cluster_network, "hostPrefix": 23}],
            "serviceNetwork": [service_network],
            "defaultNetwork": {
                "type": "OVNKubernetes",
                "ovnKubernetesConfig": {
                    "hybridOverlayConfig": {
                        "hybridClusterNetwork": [{"cidr": hybrid_cidr, "hostPrefix": host_prefix}]
                    }
                },
            },
        },
    }


async def install_network_config(
    client: AsyncClient, config: dict[str, Any], *, timeout: float = 30.0
) -> None:
    """Install the Network CRD and apply ``config``; wait until the object can be read back."""
    crd = cast(CustomResourceDefinition, CustomResourceDefinition.from_dict(_CRD))
    await client.apply(crd, field_manager=FIELD_MANAGER, force=True)
    deadline = time.monotonic() + timeout
    obj = NetworkOperatorConfig.from_dict(config)
    while True:
        try:
            await client.apply(obj, field_manager=FIELD_MANAGER, force=True)
            await client.get(NetworkOperatorConfig, "cluster")
            return
        except (ApiError, httpx2.HTTPStatusError) as err:  # not servable yet (404, then 429)
            if time.monotonic() > deadline:
                raise TimeoutError(f"networks.operator.openshift.io not servable: {err}") from err
            await asyncio.sleep(0.1)


def subnets(cidr: str, host_prefix: int) -> Iterator[str]:
    """Every node subnet of the hybrid cluster network, lowest first."""
    network = ipaddress.ip_network(cidr)
    if network.version != 4:
        raise ValueError("the hybrid overlay is IPv4 only")
    for subnet in network.subnets(new_prefix=host_prefix):
        yield str(subnet)


class HybridOverlaySubnetAllocator:
    """Gives every Windows node one hybrid-overlay subnet, as ovnkube's cluster manager does.

    Args:
        client: An admin client (ovnkube's service account can patch nodes).
        cidr: The hybrid cluster network.
        host_prefix: Prefix length of each node's subnet.
        resync: Seconds between passes when no Node event wakes it.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        cidr: str = HYBRID_CLUSTER_NETWORK,
        host_prefix: int = HOST_PREFIX,
        resync: float = 5.0,
    ) -> None:
        self.client = client
        self.cidr = cidr
        self.host_prefix = host_prefix
        self.resync = resync
        self.allocated: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> HybridOverlaySubnetAllocator:
        wake = loop.Wakeup()
        self._tasks = [
            asyncio.create_task(
                loop.watch_forever(self.client, Node, namespace=None, wake=[wake]),
                name="ovnkube-node-watch",
            ),
            asyncio.create_task(
                loop.run_passes("ovnkube hybrid overlay", self.allocate_all, wake, self.resync),
                name="ovnkube-allocator",
            ),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def allocate_all(self) -> None:
        """One pass: keep existing annotations, annotate new Windows nodes, free deleted ones."""
        nodes = [
            node async for node in self.client.list(Node, labels={"kubernetes.io/os": WINDOWS_OS})
        ]
        present: dict[str, str | None] = {}
        for node in nodes:
            assert node.metadata is not None and node.metadata.name is not None
            present[node.metadata.name] = (node.metadata.annotations or {}).get(SUBNET_ANNOTATION)
        self.allocated = {
            name: subnet for name, subnet in self.allocated.items() if name in present
        }
        for name, subnet in present.items():
            if subnet:
                self.allocated[name] = subnet
        taken = set(self.allocated.values())
        free = (s for s in subnets(self.cidr, self.host_prefix) if s not in taken)
        for name in sorted(n for n, subnet in present.items() if not subnet):
            subnet = next(free, None)
            if subnet is None:
                log.error("ovnkube: hybrid cluster network %s is exhausted", self.cidr)
                return
            patch = {"metadata": {"annotations": {SUBNET_ANNOTATION: subnet}}}
            try:
                await self.client.patch(Node, name, patch, patch_type=PatchType.MERGE)
            except ApiError as err:
                if err.status.code == 404:
                    continue
                raise
            self.allocated[name] = subnet
            log.info("ovnkube: node %s gets hybrid overlay subnet %s", name, subnet)
