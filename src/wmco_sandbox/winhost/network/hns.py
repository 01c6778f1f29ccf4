"""The Host Networking Service state of one simulated host: networks and endpoints.

HNS is a Windows service that owns virtual networks (``Overlay``, ``L2Bridge``, ``NAT``,
``Transparent``...) and their endpoints (a container's or the host's virtual NIC). It is what
``Get-HnsNetwork`` / ``Get-HnsEndpoint`` show, what the CNI plugins (win-overlay, win-bridge)
attach pods to, what kube-proxy's winkernel mode programs and what hybrid-overlay-node and
flanneld create. The facts: ``shared/reference/windows-networking.md`` §1, §5.

HNS exists only once the ``Containers`` feature is enabled (the host wires :attr:`HnsState.available`
to that); callers check it, because each of them fails in its own words without it.

Networks created with the ``EnableNonPersistent`` flag vanish at reboot; so do all endpoints.
Creating the first network that needs a virtual switch on the host NIC, and removing the last
one, briefly cuts the host's connectivity: :attr:`HnsState.on_connectivity_blip` lets the host
drop its SSH sessions then, and :attr:`HnsState.blips` counts those moments.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "ELEMENT_NOT_FOUND",
    "SWITCH_TYPES",
    "HnsEndpoint",
    "HnsError",
    "HnsNetwork",
    "HnsState",
    "HnsSubnet",
]

SWITCH_TYPES = ("Overlay", "L2Bridge", "L2Tunnel", "Transparent")
"""Network types that bind a virtual switch to the host's NIC (NAT and ICS do not)."""

ELEMENT_NOT_FOUND = 2147943568
"""HRESULT 0x80070490 (ERROR_NOT_FOUND): what HNS answers for an unknown ID."""

_INVALID_ADDRESS = "An address provided is invalid or reserved."


class HnsError(Exception):
    """An HNS call failed; the message is HNS's own text, ``code`` its HRESULT where known."""

    def __init__(self, message: str, code: int = 0x80004005) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class HnsSubnet:
    """One subnet of a network (``Subnets[]`` of ``Get-HnsNetwork``)."""

    address_prefix: str
    gateway_address: str
    vsid: int | None = None
    id: str = field(default_factory=lambda: _guid())


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
        activity_id: ``ActivityId`` (GUID of the creating request).
        version: ``Version`` (a 64-bit number HNS bumps on change).
        network_adapter_name: ``NetworkAdapterName`` (the host NIC it is bound to).
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
    activity_id: str = field(default_factory=lambda: _guid())
    version: int = 0
    network_adapter_name: str = "Ethernet"

    @property
    def flags(self) -> int:
        """HNS v1 ``Flags``: 8 = ``EnableNonPersistent``."""
        return 0 if self.persistent else 8

    @property
    def needs_switch(self) -> bool:
        """Whether this network binds a virtual switch to the host NIC."""
        return self.type in SWITCH_TYPES


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
        policies: Endpoint policies (``{"Type": "OutBoundNAT"}``...).
        version: ``Version``.
    """

    id: str
    name: str
    network_id: str
    ip_address: str
    mac_address: str
    prefix_length: int
    gateway_address: str
    host_compartment: int | None = None
    policies: list[dict[str, object]] = field(default_factory=list)
    version: int = 0


def _guid() -> str:
    return str(uuid.uuid4()).upper()


_versions = itertools.count(38654705664)


def _dr_mac(network_id: str) -> str:
    """A Hyper-V style MAC (``00-15-5D-..``) derived from the network ID, as HNS assigns one."""
    digest = hashlib.sha256(network_id.encode()).digest()
    return "00-15-5D-" + "-".join(f"{b:02X}" for b in digest[:3])


@dataclass
class HnsState:
    """The networks and endpoints of one host.

    Attributes:
        networks: By ID.
        endpoints: By ID.
        on_connectivity_blip: Called when creating or removing a network cuts host connectivity.
        available: Whether HNS runs at all (the host: the ``Containers`` feature is enabled).
        blips: How many connectivity blips happened so far.
    """

    networks: dict[str, HnsNetwork] = field(default_factory=dict)
    endpoints: dict[str, HnsEndpoint] = field(default_factory=dict)
    on_connectivity_blip: Callable[[], None] | None = None
    available: Callable[[], bool] = field(default=lambda: True)
    blips: int = 0

    # -- queries ------------------------------------------------------------------------------
    def network_named(self, name: str) -> HnsNetwork | None:
        """The network called ``name`` (HNS names are case-sensitive), or None."""
        return next((n for n in self.networks.values() if n.name == name), None)

    def network(self, network_id: str) -> HnsNetwork | None:
        """The network with this ID (GUIDs compare case-insensitively), or None."""
        return self.networks.get(network_id.upper())

    def endpoint(self, endpoint_id: str) -> HnsEndpoint | None:
        """The endpoint with this ID, or None."""
        return self.endpoints.get(endpoint_id.upper())

    def endpoints_of(self, network_id: str) -> list[HnsEndpoint]:
        """The endpoints on a network."""
        return [e for e in self.endpoints.values() if e.network_id == network_id.upper()]

    def host_endpoint_with_ip(self, network_id: str, ip_address: str) -> HnsEndpoint | None:
        """The endpoint of a network that has this address and is attached to the host."""
        return next(
            (
                e
                for e in self.endpoints_of(network_id)
                if e.ip_address == ip_address and e.host_compartment is not None
            ),
            None,
        )

    def _switched(self) -> bool:
        return any(n.needs_switch for n in self.networks.values())

    def _blip(self) -> None:
        self.blips += 1
        if self.on_connectivity_blip is not None:
            self.on_connectivity_blip()

    # -- networks -----------------------------------------------------------------------------
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
        """Create a network; a second one with the same name is refused as HCN refuses it.

        An Overlay network gets a distributed-router MAC from HNS when none is given. The first
        network that needs a virtual switch cuts the host's connectivity for a moment.

        Raises:
            HnsError: Duplicate name (``0x803b0010``) or an invalid subnet.
        """
        if self.network_named(name) is not None:
            raise HnsError(
                "hcnCreateNetwork failed in Win32: A network with this name already exists. "
                "(0x803b0010)",
                0x803B0010,
            )
        for subnet in subnets:
            try:
                net = ipaddress.ip_network(subnet.address_prefix, strict=False)
                gateway = ipaddress.ip_address(subnet.gateway_address)
            except ValueError:
                raise HnsError(_INVALID_ADDRESS, 0x803B0002) from None
            if gateway not in net:
                raise HnsError(_INVALID_ADDRESS, 0x803B0002)
        needs_switch = type_ in SWITCH_TYPES and not self._switched()
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
            version=next(_versions),
        )
        if network.type == "Overlay" and network.dr_mac_address is None:
            network.dr_mac_address = _dr_mac(network.id)
        self.networks[network.id] = network
        if needs_switch:
            self._blip()
        return network

    def remove_network(self, network_id: str) -> None:
        """Remove a network and every endpoint on it.

        Removing the last network that holds the host's virtual switch cuts connectivity.

        Raises:
            HnsError: Unknown ID (``Element not found.``).
        """
        network = self.networks.pop(network_id.upper(), None)
        if network is None:
            raise HnsError("Element not found.", ELEMENT_NOT_FOUND)
        for endpoint in self.endpoints_of(network.id):
            del self.endpoints[endpoint.id]
        if network.needs_switch and not self._switched():
            self._blip()

    # -- endpoints ----------------------------------------------------------------------------
    def create_endpoint(
        self,
        network_id: str,
        name: str,
        *,
        ip_address: str | None = None,
        gateway_address: str | None = None,
        mac_address: str | None = None,
        policies: list[dict[str, object]] | None = None,
    ) -> HnsEndpoint:
        """Create an endpoint on a network, allocating the next free address of its subnet.

        Raises:
            HnsError: Unknown network, no free address, or an address outside the subnet.
        """
        network = self.network(network_id)
        if network is None or not network.subnets:
            raise HnsError("Element not found.", ELEMENT_NOT_FOUND)
        first = network.subnets[0]
        subnet = ipaddress.ip_network(first.address_prefix, strict=False)
        used = {e.ip_address for e in self.endpoints_of(network.id)}
        used.add(first.gateway_address)
        if ip_address is None:
            free = (str(h) for h in subnet.hosts() if str(h) not in used)
            ip_address = next(free, None)
            if ip_address is None:
                raise HnsError(_INVALID_ADDRESS, 0x803B0002)
        else:
            try:
                inside = ipaddress.ip_address(ip_address) in subnet
            except ValueError:
                inside = False
            if not inside or ip_address in used:
                raise HnsError(_INVALID_ADDRESS, 0x803B0002)
        octets = ipaddress.ip_address(ip_address).packed
        endpoint = HnsEndpoint(
            _guid(),
            name,
            network.id,
            ip_address,
            mac_address or "0E-2A-" + "-".join(f"{b:02X}" for b in octets),
            subnet.prefixlen,
            gateway_address or first.gateway_address,
            policies=list(policies or []),
            version=next(_versions),
        )
        self.endpoints[endpoint.id] = endpoint
        return endpoint

    def attach_endpoint(self, endpoint_id: str, compartment: int) -> HnsEndpoint:
        """Attach an endpoint to a host compartment (1 = the host): a host vNIC appears.

        Raises:
            HnsError: Unknown endpoint.
        """
        endpoint = self.endpoint(endpoint_id)
        if endpoint is None:
            raise HnsError("Element not found.", ELEMENT_NOT_FOUND)
        endpoint.host_compartment = compartment
        return endpoint

    def remove_endpoint(self, endpoint_id: str) -> None:
        """Remove an endpoint.

        Raises:
            HnsError: Unknown endpoint.
        """
        if self.endpoints.pop(endpoint_id.upper(), None) is None:
            raise HnsError("Element not found.", ELEMENT_NOT_FOUND)

    def reboot(self) -> None:
        """What survives a reboot: persistent networks only, and no endpoint at all."""
        self.endpoints.clear()
        for network_id in [i for i, n in self.networks.items() if not n.persistent]:
            del self.networks[network_id]
