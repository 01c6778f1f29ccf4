"""The sandbox's cluster-side network pieces against the real API server.

OVN-Kubernetes' hybrid-overlay subnet allocation (what hybrid-overlay-node waits for) and the
``networks.operator.openshift.io`` config the operator's ``auto`` profile reads.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import AsyncIterator

import pytest
from lightkube import AsyncClient
from lightkube.models.core_v1 import NodeSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Node

from kube_helpers import eventually
from wmco_sandbox.controlplane import CLUSTER_CIDR, SERVICE_CIDR
from wmco_sandbox.netsim import ovn

pytestmark = pytest.mark.integration


def _node(name: str, os: str = "windows", subnet: str | None = None) -> Node:
    annotations = {ovn.SUBNET_ANNOTATION: subnet} if subnet else None
    return Node(
        metadata=ObjectMeta(name=name, labels={"kubernetes.io/os": os}, annotations=annotations),
        spec=NodeSpec(),
    )


async def _subnet(kube: AsyncClient, name: str) -> str | None:
    node = await kube.get(Node, name)
    return ((node.metadata.annotations if node.metadata else None) or {}).get(ovn.SUBNET_ANNOTATION)


@pytest.fixture
async def nodes(kube: AsyncClient) -> AsyncIterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        await kube.delete(Node, name)


async def test_windows_nodes_get_distinct_hybrid_overlay_subnets(
    kube: AsyncClient, nodes: list[str]
) -> None:
    prefix = f"ho-{secrets.token_hex(3)}"
    cidr = "10.200.0.0/20"
    # A node already annotated (a restart of ovnkube) keeps its subnet; the lowest one is taken.
    kept = "10.200.0.0/23"
    for name, os, subnet in (
        (f"{prefix}-a", "windows", kept),
        (f"{prefix}-b", "windows", None),
        (f"{prefix}-c", "windows", None),
        (f"{prefix}-linux", "linux", None),
    ):
        await kube.create(_node(name, os, subnet))
        nodes.append(name)
    async with ovn.HybridOverlaySubnetAllocator(kube, cidr=cidr, host_prefix=23, resync=0.5):

        async def annotated() -> bool:
            return all([await _subnet(kube, f"{prefix}-{n}") for n in "bc"])

        await eventually(annotated, "both new Windows nodes to get a subnet", 30)
        got = {n: await _subnet(kube, f"{prefix}-{n}") for n in "abc"}
        assert got["a"] == kept
        assert len(set(got.values())) == 3
        for subnet in got.values():
            assert subnet is not None
            network = ipaddress.ip_network(subnet)
            assert network.prefixlen == 23 and network.subnet_of(ipaddress.ip_network(cidr))
        # The allocator has seen the Linux node (same pass) and leaves it alone.
        assert await _subnet(kube, f"{prefix}-linux") is None
        # A deleted node's subnet is reused by the next Windows node.
        await kube.delete(Node, f"{prefix}-b")
        nodes.remove(f"{prefix}-b")
        freed = got["b"]
        await kube.create(_node(f"{prefix}-d"))
        nodes.append(f"{prefix}-d")

        async def reused() -> bool:
            return await _subnet(kube, f"{prefix}-d") == freed

        await eventually(reused, "the freed subnet to be given to the new node", 30)


@pytest.fixture
async def network_config(kube: AsyncClient) -> AsyncIterator[None]:
    yield
    # The control plane is shared by the session: an operator elsewhere must not find an OVN
    # cluster that this test made up.
    await kube.delete(ovn.NetworkOperatorConfig, "cluster")
    await kube.delete(CustomResourceDefinition, "networks.operator.openshift.io")


async def test_network_operator_config_says_ovn_with_a_hybrid_overlay(
    kube: AsyncClient, network_config: None
) -> None:
    config = ovn.network_config(cluster_network=CLUSTER_CIDR, service_network=SERVICE_CIDR)
    await ovn.install_network_config(kube, config)
    obj = await kube.get(ovn.NetworkOperatorConfig, "cluster")
    spec = obj["spec"]
    assert spec["defaultNetwork"]["type"] == "OVNKubernetes"
    hybrid = spec["defaultNetwork"]["ovnKubernetesConfig"]["hybridOverlayConfig"]
    assert hybrid["hybridClusterNetwork"] == [
        {"cidr": ovn.HYBRID_CLUSTER_NETWORK, "hostPrefix": ovn.HOST_PREFIX}
    ]
    assert spec["serviceNetwork"] == [SERVICE_CIDR]
