"""The Host Networking Service state of one simulated host: networks and endpoints.

HNS is a Windows service that owns virtual networks (``Overlay``, ``L2Bridge``, ``NAT``,
``Transparent``...) and their endpoints (a container's or the host's virtual NIC). It is what
``Get-HnsNetwork`` / ``Get-HnsEndpoint`` show, what the CNI plugins (win-overlay, win-bridge)
attach pods to, what kube-proxy's winkernel mode programs and what hybrid-overlay-node and
flanneld create. The facts: ``shared/reference/windows-networking.md`` §1, §5.

Networks created with the ``EnableNonPersistent`` flag vanish at reboot; so do all endpoints.
Creating the first network that needs a virtual switch on the host NIC briefly cuts the host's
connectivity: :attr:`HnsState.on_connectivity_blip` lets the host drop its SSH sessions then.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["HnsEndpoint", "HnsError", "HnsNetwork", "HnsState", "HnsSubnet"]


class HnsError(Exception):
    """An HNS call failed; the message is HNS's own text (with its HRESULT where known)."""


@dataclass
class HnsSubnet:
    """One subnet of a network (``Subnets[]`` of ``Get-HnsNetwork``)."""

    address_prefix: str
    gateway_address: str
    vsid: int | None = None


@dataclass
class HnsNetwork:
    """One HNS network.

    Attributes:
        id: GUID, upper case (``Get-HnsNetwork``'s ``ID``).
        name: Network name, the CNI configuration's ``name`` must equal it.
        type: ``Overlay``, ``L2Bridge``, ``NAT``, ``Transparent``, ``ICS``...
        subnets: Its subnets.
        management_ip: The host underlay address it is bound to.
        dr_mac_address: The distributed-router MAC (Overlay networks), dash form.
        persistent: False when created with ``EnableNonPersistent`` (gone after a reboot).
        policies: Network policies as HNS returns them (``{"Type": "HostRoute"}``...).
        created_by: Which program made it (for the host log and tests).
    """

    id: str
    name: str
    type: str
    subnets: list[HnsSubnet] = field(default_factory=list)
    management_ip: str = ""
    dr_mac_address: str | None = None
    persistent: bool = True
    policies: list[dict[str, object]] = field(default_factory=list)
    created_by: str = ""


@dataclass
class HnsEndpoint:
    """One HNS endpoint (``Get-HnsEndpoint``).

    Attributes:
        id: GUID, upper case.
        name: Endpoint name (``VIPEndpoint``, or a container id).
        network_id: The ``VirtualNetwork`` it belongs to.
        ip_address: Its IPv4 address, allocated from the network's subnet if not given.
        mac_address: Dash form (``0E-2A-0A-84-00-02``).
        prefix_length: The subnet's prefix length.
        gateway_address: The subnet's gateway.
        host_compartment: Set once attached to the host (compartment 1): a host vNIC exists.
    """

    id: str
    name: str
    network_id: str
    ip_address: str
    mac_address: str
    prefix_length: int
    gateway_address: str
    host_compartment: int | None = None


def _guid() -> str:
    return str(uuid.uuid4()).upper()


@dataclass
class HnsState:
    """The networks and endpoints of one host.

    Attributes:
        networks: By ID.
        endpoints: By ID.
        on_connectivity_blip: Called when creating a network cuts host connectivity.
    """

    networks: dict[str, HnsNetwork] = field(default_factory=dict)
    endpoints: dict[str, HnsEndpoint] = field(default_factory=dict)
    on_connectivity_blip: Callable[[], None] | None = None

    def network_named(self, name: str) -> HnsNetwork | None:
        """The network called ``name`` (HNS names are case-sensitive), or None."""
        return next((n for n in self.networks.values() if n.name == name), None)

    def endpoints_of(self, network_id: str) -> list[HnsEndpoint]:
        """The endpoints on a network."""
        return [e for e in self.endpoints.values() if e.network_id == network_id]

    def create_network(
        self,
        name: str,
        type_: str,
        subnets: list[HnsSubnet],
        *,
        management_ip: str = "",
        dr_mac_address: str | None = None,
        persistent: bool = True,
        policies: list[dict[str, object]] | None = None,
        created_by: str = "",
    ) -> HnsNetwork:
        """Create a network; a second one with the same name is refused as HCN refuses it."""
        if self.network_named(name) is not None:
            raise HnsError(
                "hcnCreateNetwork failed in Win32: A network with this name already exists. "
                "(0x803b0010)"
            )
        needs_switch = type_ in ("Overlay", "L2Bridge", "Transparent") and not any(
            n.type in ("Overlay", "L2Bridge", "Transparent") for n in self.networks.values()
        )
        network = HnsNetwork(
            _guid(),
            name,
            type_,
            list(subnets),
            management_ip,
            dr_mac_address,
            persistent,
            list(policies or []),
            created_by,
        )
        self.networks[network.id] = network
        if needs_switch and self.on_connectivity_blip is not None:
            self.on_connectivity_blip()
        return network

    def remove_network(self, network_id: str) -> None:
        """Remove a network and every endpoint on it."""
        if self.networks.pop(network_id, None) is None:
            raise HnsError(f"Network {network_id} not found")
        for endpoint in self.endpoints_of(network_id):
            del self.endpoints[endpoint.id]

    def create_endpoint(
        self, network_id: str, name: str, *, ip_address: str | None = None
    ) -> HnsEndpoint:
        """Create an endpoint on a network, allocating the next free address of its subnet."""
        network = self.networks.get(network_id)
        if network is None or not network.subnets:
            raise HnsError(f"Network {network_id} not found")
        subnet = ipaddress.ip_network(network.subnets[0].address_prefix, strict=False)
        used = {e.ip_address for e in self.endpoints_of(network_id)}
        used.add(network.subnets[0].gateway_address)
        if ip_address is None:
            free = (str(h) for h in subnet.hosts() if str(h) not in used)
            ip_address = next(free, None)
            if ip_address is None:
                raise HnsError(
                    "HNS failed with error : An address provided is invalid or reserved."
                )
        elif ipaddress.ip_address(ip_address) not in subnet or ip_address in used:
            raise HnsError("HNS failed with error : An address provided is invalid or reserved.")
        octets = ipaddress.ip_address(ip_address).packed
        endpoint = HnsEndpoint(
            _guid(),
            name,
            network_id,
            ip_address,
            "0E-2A-" + "-".join(f"{b:02X}" for b in octets),
            subnet.prefixlen,
            network.subnets[0].gateway_address,
        )
        self.endpoints[endpoint.id] = endpoint
        return endpoint

    def remove_endpoint(self, endpoint_id: str) -> None:
        """Remove an endpoint."""
        if self.endpoints.pop(endpoint_id, None) is None:
            raise HnsError(f"Endpoint {endpoint_id} not found")

    def reboot(self) -> None:
        """What survives a reboot: persistent networks only, and no endpoint at all."""
        self.endpoints.clear()
        for network_id in [i for i, n in self.networks.items() if not n.persistent]:
            del self.networks[network_id]
