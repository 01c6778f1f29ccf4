"""HNS objects in the v1 JSON shape that ``HNSCall`` returns and ``Get-HnsNetwork`` shows.

The in-box ``Get-HnsNetwork``/``Get-HnsEndpoint`` and hns.psm1's ``Invoke-HNSRequest`` all call
``vmcompute.dll!HNSCall`` and turn the JSON reply into objects with ``ConvertFrom-Json``; so
what a client sees (and what ``ConvertTo-Json`` prints back) is this shape, field for field.
Field names and kinds follow real outputs (``windows-networking.md`` §5: rancher/rke2#3925,
sig-windows-dev-tools#184, microsoft/SDN#582, Windows-Containers#563); values that only HNS
knows (health timestamps, resource allocators) are plausible constants.

This module also reads the v1 request bodies that hns.psm1 sends (``POST /endpoints``,
``POST /endpoints/<id>/attach``, ``POST /networks``) into calls on :class:`HnsState`.
"""

from __future__ import annotations

from typing import Any

from wmco_sandbox.winhost.network.hns import (
    HnsEndpoint,
    HnsError,
    HnsNetwork,
    HnsState,
    HnsSubnet,
)

__all__ = [
    "create_endpoint_from_request",
    "create_network_from_request",
    "endpoint_json",
    "error_reply",
    "network_json",
    "success_reply",
]

_EXTENSIONS = [
    {"Id": "E7C3B2F0-F3C5-48DF-AF2B-10FED6D72E7A", "IsEnabled": False,
     "Name": "Microsoft Windows Filtering Platform"},
    {"Id": "F74F241B-440F-4433-BB28-00F89EAD20D8", "IsEnabled": True,
     "Name": "Microsoft Azure VFP Switch Extension"},
    {"Id": "430BDADD-BAB0-41AB-A369-94B67FA5BE0A", "IsEnabled": True,
     "Name": "Microsoft NDIS Capture"},
]  # fmt: skip


def _subnet_json(subnet: HnsSubnet) -> dict[str, Any]:
    policies: list[dict[str, Any]] = []
    if subnet.vsid is not None:
        policies.append({"Type": "VSID", "VSID": subnet.vsid})
    return {
        "AddressPrefix": subnet.address_prefix,
        "GatewayAddress": subnet.gateway_address,
        "ID": subnet.id,
        "IpSubnets": [
            {
                "Flags": 3,
                "ID": subnet.id[:-4] + "0001",
                "IpAddressPrefix": subnet.address_prefix,
                "ObjectType": 6,
                "Policies": [],
                "State": 0,
            }
        ],
        "ObjectType": 5,
        "Policies": policies,
        "State": 0,
    }


def network_json(network: HnsNetwork, state: HnsState) -> dict[str, Any]:
    """One network as ``GET /networks`` returns it (HNS v1)."""
    count = len(state.endpoints_of(network.id))
    doc: dict[str, Any] = {
        "ActivityId": network.activity_id,
        "AdditionalParams": {},
        "CurrentEndpointCount": count,
    }
    if network.dr_mac_address is not None:
        doc["DrMacAddress"] = network.dr_mac_address
    doc.update(
        {
            "Extensions": [dict(e) for e in _EXTENSIONS] if network.needs_switch else [],
            "Flags": network.flags,
            "Health": {"LastErrorCode": 0, "LastUpdateTime": 133720000000000000},
            "ID": network.id,
            "IPv6": False,
            "LayeredOn": network.id[:-12] + "000000000001" if network.needs_switch else "",
            "MacPools": [
                {"EndMacAddress": "00-15-5D-A9-8F-FF", "StartMacAddress": "00-15-5D-A9-80-00"}
            ],
            "ManagementIP": network.management_ip,
            "Name": network.name,
            "NetworkAdapterName": network.network_adapter_name if network.needs_switch else "",
            "Policies": [dict(p) for p in network.policies],
            "Resources": {
                "AdditionalParams": {},
                "AllocationOrder": 2,
                "Flags": 0,
                "ID": network.activity_id,
                "PortOperationTime": 0,
                "State": 1,
                "SwitchOperationTime": 0,
                "VfpOperationTime": 0,
            },
            "State": 1,
            "Subnets": [_subnet_json(s) for s in network.subnets],
            "TotalEndpoints": count,
            "Type": network.type,
            "Version": network.version,
        }
    )
    return doc


def endpoint_json(endpoint: HnsEndpoint, state: HnsState) -> dict[str, Any]:
    """One endpoint as ``GET /endpoints`` returns it (HNS v1)."""
    network = state.network(endpoint.network_id)
    attached = endpoint.host_compartment is not None
    return {
        "ID": endpoint.id,
        "Name": endpoint.name,
        "VirtualNetwork": endpoint.network_id,
        "VirtualNetworkName": network.name if network is not None else "",
        "IPAddress": endpoint.ip_address,
        "MacAddress": endpoint.mac_address,
        "PrefixLength": endpoint.prefix_length,
        "GatewayAddress": endpoint.gateway_address,
        "State": 2 if attached else 1,
        "IsRemoteEndpoint": False,
        "Policies": [dict(p) for p in endpoint.policies],
        "Resources": {
            "AdditionalParams": {},
            "AllocationOrder": 1,
            "Flags": 0,
            "ID": endpoint.id,
            "State": 1,
        },
        "SharedContainers": [],
        "Version": endpoint.version,
    }


def success_reply(output: object) -> dict[str, Any]:
    """The reply envelope of a successful ``HNSCall``."""
    return {"Success": True, "Output": output}


def error_reply(error: HnsError) -> dict[str, Any]:
    """The reply envelope of a failed ``HNSCall``."""
    return {"Success": False, "Error": error.message, "ErrorCode": error.code}


def _text(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) and value else None


def create_endpoint_from_request(state: HnsState, doc: dict[str, Any]) -> HnsEndpoint:
    """``POST /endpoints`` with hns.psm1's body (``VirtualNetwork``, ``Name``, ``IPAddress``...).

    Raises:
        HnsError: What HNS answers (unknown network, bad address).
    """
    network_id = _text(doc, "VirtualNetwork")
    if network_id is None:
        raise HnsError("Element not found.", 2147943568)
    policies = [p for p in doc.get("Policies") or [] if isinstance(p, dict)]
    return state.create_endpoint(
        network_id,
        _text(doc, "Name") or "",
        ip_address=_text(doc, "IPAddress"),
        gateway_address=_text(doc, "GatewayAddress"),
        mac_address=_text(doc, "MacAddress"),
        policies=policies,
    )


def create_network_from_request(state: HnsState, doc: dict[str, Any]) -> HnsNetwork:
    """``POST /networks`` with a v1 body (``Name``, ``Type``, ``Subnets[]``, ``Flags``...).

    Raises:
        HnsError: What HNS answers (duplicate name, bad subnet).
    """
    subnets = []
    for raw in doc.get("Subnets") or []:
        if not isinstance(raw, dict):
            continue
        vsid = next(
            (
                p.get("VSID")
                for p in raw.get("Policies") or []
                if isinstance(p, dict) and p.get("Type") == "VSID"
            ),
            None,
        )
        subnets.append(
            HnsSubnet(
                str(raw.get("AddressPrefix", "")),
                str(raw.get("GatewayAddress", "")),
                vsid if isinstance(vsid, int) else None,
            )
        )
    flags = doc.get("Flags")
    policies = [p for p in doc.get("Policies") or [] if isinstance(p, dict)]
    return state.create_network(
        _text(doc, "Name") or "",
        _text(doc, "Type") or "NAT",
        subnets,
        management_ip=_text(doc, "ManagementIP") or "",
        persistent=not (isinstance(flags, int) and flags & 8),
        policies=policies,
        created_by="HNSCall",
    )
