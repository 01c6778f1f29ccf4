"""The in-box HNS cmdlets (HostNetworkingService module) and the ``HNSCall`` they share.

With the ``Containers`` feature enabled, Windows Server ships ``Get-HnsNetwork``,
``Get-HnsEndpoint``, ``Remove-HnsNetwork`` and ``Remove-HnsEndpoint``; without it they do not
exist (CommandNotFound). All of them, like hns.psm1's ``Invoke-HNSRequest``, call
``vmcompute.dll!HNSCall(method, path, request)`` and ``ConvertFrom-Json`` its reply, so the
objects carry the HNS v1 fields (:mod:`~wmco_sandbox.winhost.network.hnsv1`). :func:`hns_call`
is that entry point on the simulated HNS state.

``... | Remove-HnsNetwork`` with no input does nothing; removing the last network that holds
the host's virtual switch drops every SSH connection (the HNS state's connectivity blip).
"""

from __future__ import annotations

import json
import re
from typing import Any

from wmco_sandbox.winhost.core.machine import Machine
from wmco_sandbox.winhost.network import hnsv1
from wmco_sandbox.winhost.network.hns import ELEMENT_NOT_FOUND, HnsError
from wmco_sandbox.winhost.powershell.binding import Invocation, P
from wmco_sandbox.winhost.powershell.cmdlets.json import from_json, ps_string
from wmco_sandbox.winhost.powershell.errors import ErrorRecord
from wmco_sandbox.winhost.powershell.registry import register
from wmco_sandbox.winhost.powershell.values import PSObject, to_str

__all__ = [
    "EMPTY_GUID", "NotSimulatedCall", "containers_enabled", "guid_text", "hns_call",
    "write_hns_error",
]  # fmt: skip

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
_GUID = re.compile(r"^\{?[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}\}?$")  # fmt: skip


class NotSimulatedCall(Exception):
    """An ``HNSCall`` path or method the simulated HNS does not answer."""


def containers_enabled(machine: Machine) -> bool:
    """Whether the Containers feature is enabled (HNS and its module exist)."""
    return machine.features.get("containers") == "Enabled"


def guid_text(value: str) -> str | None:
    """``[Guid]$value`` as .NET formats it (lower case, dashes), or None if not a GUID."""
    if not _GUID.match(value.strip()):
        return None
    digits = re.sub(r"[^0-9A-Fa-f]", "", value).lower()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def hns_call(machine: Machine, method: str, path: str, request: str) -> dict[str, Any]:
    """``HNSCall(method, path, request)``: the JSON reply envelope as a dict.

    Raises:
        NotSimulatedCall: Paths other than ``/networks[/<id>]`` and ``/endpoints[/<id>[/attach|
            /detach]]``.
    """
    state = machine.hns
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("networks", "endpoints") or len(parts) > 3:
        raise NotSimulatedCall(f"{method} {path}")
    kind, ident = parts[0], parts[1] if len(parts) > 1 else None
    action = parts[2] if len(parts) > 2 else None
    try:
        body: dict[str, Any] = json.loads(request) if request.strip() else {}
    except json.JSONDecodeError:
        return hnsv1.error_reply(HnsError("Invalid JSON document string.", 0x803B001B))
    try:
        if method == "GET" and action is None:
            if kind == "networks":
                nets = list(state.networks.values())
                if ident is None:
                    return hnsv1.success_reply([hnsv1.network_json(n, state) for n in nets])
                net = state.network(ident)
                if net is None:
                    raise HnsError("Element not found.", ELEMENT_NOT_FOUND)
                return hnsv1.success_reply(hnsv1.network_json(net, state))
            eps = list(state.endpoints.values())
            if ident is None:
                return hnsv1.success_reply([hnsv1.endpoint_json(e, state) for e in eps])
            ep = state.endpoint(ident)
            if ep is None:
                raise HnsError("Element not found.", ELEMENT_NOT_FOUND)
            return hnsv1.success_reply(hnsv1.endpoint_json(ep, state))
        if method == "DELETE" and ident is not None and action is None:
            if kind == "networks":
                state.remove_network(ident)
            else:
                state.remove_endpoint(ident)
            return hnsv1.success_reply(None)
        if method == "POST" and ident is None:
            if kind == "networks":
                net = hnsv1.create_network_from_request(state, body)
                return hnsv1.success_reply(hnsv1.network_json(net, state))
            ep = hnsv1.create_endpoint_from_request(state, body)
            return hnsv1.success_reply(hnsv1.endpoint_json(ep, state))
        if method == "POST" and kind == "endpoints" and ident and action in ("attach", "detach"):
            if action == "attach":
                if str(body.get("SystemType", "")).lower() != "host":
                    raise NotSimulatedCall(f"{method} {path} SystemType={body.get('SystemType')}")
                compartment = body.get("CompartmentId")
                state.attach_endpoint(ident, compartment if isinstance(compartment, int) else 1)
            else:
                ep = state.endpoint(ident)
                if ep is None:
                    raise HnsError("Element not found.", ELEMENT_NOT_FOUND)
                ep.host_compartment = None
            return hnsv1.success_reply(None)
    except HnsError as exc:
        return hnsv1.error_reply(exc)
    raise NotSimulatedCall(f"{method} {path}")


def _objects(machine: Machine, kind: str, ident: str | None) -> list[object]:
    path = f"/{kind}" + (f"/{ident}" if ident else "")
    reply = hns_call(machine, "GET", path, "")
    if not reply.get("Success"):
        raise HnsError(str(reply.get("Error")), int(reply.get("ErrorCode") or 0))
    output = from_json(reply.get("Output"))
    return output if isinstance(output, list) else [output]


def write_hns_error(inv: Invocation, reply_error: HnsError, command: str = "") -> None:
    """``Write-Error $output`` of a failed HNS reply (the record shows the reply object)."""
    shown = from_json(hnsv1.error_reply(reply_error))
    inv.error(ErrorRecord(
        ps_string(shown), f"Microsoft.PowerShell.Commands.WriteErrorException,{command or inv.name}",
        "NotSpecified", activity="Write-Error", reason="WriteErrorException", command=command,
    ))  # fmt: skip


_GET_PARAMS = [P("Id", pos=0), P("Detailed", "switch"), P("Version", "int")]


async def _get(inv: Invocation, kind: str) -> list[object]:
    ident = to_str(inv.arg("Id", "")) or None
    if ident is not None and guid_text(ident) in (None, EMPTY_GUID):
        ident = None
    try:
        return _objects(inv.session.machine, kind, ident)
    except HnsError as exc:
        write_hns_error(inv, exc)
        return []


@register("Get-HnsNetwork", _GET_PARAMS, available=containers_enabled)
async def get_hns_network(inv: Invocation) -> list[object]:
    """Get-HnsNetwork: every HNS network (HNS v1 objects)."""
    return await _get(inv, "networks")


@register("Get-HnsEndpoint", _GET_PARAMS, available=containers_enabled)
async def get_hns_endpoint(inv: Invocation) -> list[object]:
    """Get-HnsEndpoint: every HNS endpoint (HNS v1 objects)."""
    return await _get(inv, "endpoints")


_REMOVE_PARAMS = [P("InputObjects", "object", pos=0)]


async def _remove(inv: Invocation, kind: str) -> list[object]:
    given = inv.arg("InputObjects")
    items = given if isinstance(given, list) else ([] if given is None else [given])
    for item in [*items, *inv.input]:
        ident = to_str(item.get("ID") if isinstance(item, PSObject) else item)
        reply = hns_call(inv.session.machine, "DELETE", f"/{kind}/{ident}", "")
        if not reply.get("Success"):
            write_hns_error(
                inv, HnsError(str(reply.get("Error")), int(reply.get("ErrorCode") or 0))
            )
    return []


@register("Remove-HnsNetwork", _REMOVE_PARAMS, available=containers_enabled)
async def remove_hns_network(inv: Invocation) -> list[object]:
    """Remove-HnsNetwork: delete the piped (or given) networks and their endpoints."""
    return await _remove(inv, "networks")


@register("Remove-HnsEndpoint", _REMOVE_PARAMS, available=containers_enabled)
async def remove_hns_endpoint(inv: Invocation) -> list[object]:
    """Remove-HnsEndpoint: delete the piped (or given) endpoints."""
    return await _remove(inv, "endpoints")
