r"""Import-Module, and the hns.psm1 functions the simulated host knows how to run.

``Import-Module <path>`` needs the file: a missing one is PowerShell's ``Modules_ModuleNotFound``
error. The module's text is read but its function bodies are NOT interpreted (an approximation,
documented in docs/windows-surface.md): the ``function <Name>`` declarations are found, reduced
to the ``Export-ModuleMember -Function`` list when the module has one, and those names become
callable in the session. A name the host simulates (:data:`registry.MODULE_FUNCTIONS`: the
three functions of WMCO's ``hns.psm1``) then runs with the real module's semantics; any other
declared name fails with a clear "not simulated" error; undeclared names stay CommandNotFound.
Unapproved verbs (``Attach-``) give 5.1's warning unless ``-DisableNameChecking``.

The hns.psm1 functions call ``HNSCall`` (:func:`~...cmdlets.hns.hns_call`): they need the
Containers feature (``vmcompute.dll``), convert ``-NetworkId``/``-EndpointID``/``-Id`` to
``[Guid]`` with PowerShell's own error, and report a failed HNS reply with ``Write-Error
$output`` from ``Invoke-HNSRequest``, as the module does.
"""

from __future__ import annotations

import re

from wmco_sandbox.winhost.core.disk import DiskError, FileNode
from wmco_sandbox.winhost.network.hns import HnsError
from wmco_sandbox.winhost.powershell.binding import Invocation, P
from wmco_sandbox.winhost.powershell.cmdlets import hns as hns_cmdlets
from wmco_sandbox.winhost.powershell.cmdlets.json import compact_json, from_json, pretty_json
from wmco_sandbox.winhost.powershell.errors import ErrorRecord, PSRuntimeError
from wmco_sandbox.winhost.powershell.registry import fq, register, register_function, strs
from wmco_sandbox.winhost.powershell.values import to_str

__all__ = ["module_exports"]

_APPROVED_VERBS = frozenset(
    [
        "add",
        "clear",
        "close",
        "copy",
        "enter",
        "exit",
        "find",
        "format",
        "get",
        "hide",
        "join",
        "lock",
        "move",
        "new",
        "open",
        "optimize",
        "pop",
        "push",
        "redo",
        "remove",
        "rename",
        "reset",
        "resize",
        "search",
        "select",
        "set",
        "show",
        "skip",
        "split",
        "step",
        "switch",
        "undo",
        "unlock",
        "watch",
        "backup",
        "checkpoint",
        "compare",
        "compress",
        "convert",
        "convertfrom",
        "convertto",
        "dismount",
        "edit",
        "expand",
        "export",
        "group",
        "import",
        "initialize",
        "limit",
        "merge",
        "mount",
        "out",
        "publish",
        "restore",
        "save",
        "sync",
        "unpublish",
        "update",
        "approve",
        "assert",
        "complete",
        "confirm",
        "deny",
        "disable",
        "enable",
        "install",
        "invoke",
        "register",
        "request",
        "restart",
        "resume",
        "start",
        "stop",
        "submit",
        "suspend",
        "uninstall",
        "unregister",
        "wait",
        "debug",
        "measure",
        "ping",
        "repair",
        "resolve",
        "test",
        "trace",
        "connect",
        "disconnect",
        "read",
        "receive",
        "send",
        "write",
        "block",
        "grant",
        "protect",
        "revoke",
        "unblock",
        "unprotect",
        "use",
    ]
)  # Get-Verb in Windows PowerShell 5.1
_IN_BOX = {"microsoft.powershell.management", "microsoft.powershell.utility", "servermanager",
           "dism", "netsecurity"}  # fmt: skip
_FUNCTION = re.compile(r"^[ \t]*function[ \t]+([A-Za-z_][\w-]*)", re.IGNORECASE | re.MULTILINE)
_EXPORT = re.compile(
    r"^[ \t]*Export-ModuleMember[ \t]+(?:-Function[ \t]+)?([^\r\n#;]+)",
    re.IGNORECASE | re.MULTILINE,
)


def module_exports(text: str) -> list[str]:
    """The function names a .psm1 exports: its declarations, cut to Export-ModuleMember's."""
    declared = _FUNCTION.findall(text)
    listed = [
        name.strip().strip("'\"")
        for line in _EXPORT.findall(text)
        for name in re.split(r"[,\s]+", line)
        if name.strip() and not name.startswith("-")
    ]
    if not listed:
        return declared
    wanted = {n.lower() for n in listed}
    return [d for d in declared if d.lower() in wanted]


def _not_found(inv: Invocation, name: str) -> ErrorRecord:
    return ErrorRecord(
        f"The specified module '{name}' was not loaded because no valid module file was found "
        "in any module directory.", fq(inv, "Modules_ModuleNotFound"), "ResourceUnavailable",
        target=name, target_type="String", reason="FileNotFoundException",
    )  # fmt: skip


@register("Import-Module", [
    P("Name", "strings", pos=0, aliases=("path", "modulename")), P("DisableNameChecking", "switch"),
    P("Force", "switch"), P("Global", "switch"), P("PassThru", "switch"), P("Prefix"),
    P("Function", "strings"), P("Scope", values=("Local", "Global")),
])  # fmt: skip
async def import_module(inv: Invocation) -> list[object]:
    """Import-Module <path to .psm1> (or an in-box module name)."""
    session = inv.session
    machine = session.machine
    for name in strs(inv, "Name"):
        is_path = "\\" in name or "/" in name or name.lower().endswith((".psm1", ".psd1", ".ps1"))
        if not is_path:
            known = name.lower() in _IN_BOX or (
                name.lower() == "hostnetworkingservice" and hns_cmdlets.containers_enabled(machine)
            )
            if not known:
                inv.error(_not_found(inv, name))
            continue
        try:
            parts = machine.disk.parse(name, session.cwd)
        except DiskError:
            inv.error(_not_found(inv, name))
            continue
        node = machine.disk.lookup(parts)
        if not isinstance(node, FileNode) or node.data is None:
            inv.error(_not_found(inv, name))
            continue
        path = machine.disk.format(machine.disk.canonical(parts))
        text = bytes(node.data).decode("utf-8-sig", "replace")
        exported = module_exports(text)
        only = {f.lower() for f in strs(inv, "Function")}
        for function in exported:
            if not only or function.lower() in only:
                session.imported[function.lower()] = (function, path)
        verbs = {f.split("-", 1)[0].lower() for f in exported}
        if not inv.arg("DisableNameChecking") and verbs - _APPROVED_VERBS:
            module = path.rsplit("\\", 1)[-1].rsplit(".", 1)[0]
            session.out.append(
                f"WARNING: The names of some imported commands from the module '{module}' include "
                "unapproved verbs that might make them less discoverable. To find the commands "
                "with unapproved verbs, run the Import-Module command again with the Verbose "
                "parameter. For a list of approved verbs, type Get-Verb.\r\n"
            )
    return []


# -- hns.psm1 -----------------------------------------------------------------------------------
def _guid(inv: Invocation, param: str, default: str | None = None) -> str:
    """``[Guid]`` parameter transformation (PowerShell's error when the text is no GUID)."""
    if param not in inv.bound and default is not None:
        return default
    raw = inv.arg(param)
    if raw is None:
        raise inv.fail(ErrorRecord(
            f"Cannot bind argument to parameter '{param}' because it is null.",
            fq(inv, "ParameterArgumentValidationErrorNullNotAllowed"), "InvalidData",
            reason="ParameterBindingValidationException",
        ))  # fmt: skip
    text = hns_cmdlets.guid_text(to_str(raw))
    if text is None:
        raise inv.fail(ErrorRecord(
            f"Cannot process argument transformation on parameter '{param}'. Cannot convert "
            f'value "{to_str(raw)}" to type "System.Guid". Error: "Guid should contain 32 '
            'digits with 4 dashes (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."',
            fq(inv, "ParameterArgumentTransformationError"), "InvalidData",
            reason="ParameterBindingArgumentTransformationException",
        ))  # fmt: skip
    return text


def _hns_request(inv: Invocation, method: str, path: str, data: str) -> object:
    """Invoke-HNSRequest's body: HNSCall, ConvertFrom-Json, Write-Error on failure, .Output."""
    machine = inv.session.machine
    if not hns_cmdlets.containers_enabled(machine):
        record = ErrorRecord(
            'Exception calling "HNSCall" with "4" argument(s): "Unable to load DLL '
            "'vmcompute.dll': The specified module could not be found. (Exception from HRESULT: "
            '0x8007007E)"', "DllNotFoundException", "NotSpecified",
            reason="MethodInvocationException", offset=inv.node.start,
            length=inv.node.end - inv.node.start,
        )  # fmt: skip
        raise PSRuntimeError(record)
    try:
        reply = hns_cmdlets.hns_call(machine, method, path, data)
    except hns_cmdlets.NotSimulatedCall as exc:
        raise inv.fail(ErrorRecord(
            f"simulated host: HNSCall {exc} is not simulated.", "HnsCallNotSimulated",
            "NotImplemented", reason="NotSupportedException",
        )) from None  # fmt: skip
    if not reply.get("Success"):
        error = HnsError(str(reply.get("Error")), int(reply.get("ErrorCode") or 0))
        hns_cmdlets.write_hns_error(inv, error, command="Invoke-HNSRequest")
        return None
    return from_json(reply.get("Output"))


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else ([] if value is None else [value])


@register_function("New-HnsEndpoint", [
    P("JsonString", pos=0), P("NetworkId", "object"), P("Name"), P("IPAddress"), P("Gateway"),
    P("MacAddress"), P("EnableOutboundNat", "switch"),
])  # fmt: skip
async def new_hns_endpoint(inv: Invocation) -> list[object]:
    """New-HNSEndpoint: POST /endpoints with the body the module builds."""
    if inv.arg("JsonString"):
        # The module round-trips the string through ConvertTo-Json | ConvertFrom-Json: unchanged.
        data = to_str(inv.arg("JsonString"))
    else:
        body: dict[str, object] = {
            "VirtualNetwork": _guid(inv, "NetworkId", hns_cmdlets.EMPTY_GUID),
            "Policies": [{"Type": "OutBoundNAT"}] if inv.arg("EnableOutboundNat") else [],
        }
        for param, key in (("Name", "Name"), ("MacAddress", "MacAddress"),
                           ("IPAddress", "IPAddress"), ("Gateway", "GatewayAddress")):  # fmt: skip
            if inv.arg(param):
                body[key] = to_str(inv.arg(param))
        data = pretty_json(compact_json(body))
    return _as_list(_hns_request(inv, "POST", "/endpoints", data))


@register_function("Attach-HnsHostEndpoint", [
    P("EndpointID", "object", pos=0, mandatory=True),
    P("CompartmentID", "int", pos=1, mandatory=True),
])  # fmt: skip
async def attach_hns_host_endpoint(inv: Invocation) -> list[object]:
    """Attach-HNSHostEndpoint: POST /endpoints/<id>/attach {SystemType: Host, CompartmentId}."""
    endpoint = _guid(inv, "EndpointID")
    request = {"SystemType": "Host", "CompartmentId": inv.arg("CompartmentID")}
    path = f"/endpoints/{endpoint}/attach"
    return _as_list(_hns_request(inv, "POST", path, pretty_json(compact_json(request))))


@register_function("Invoke-HNSRequest", [
    P("Method", pos=0, mandatory=True, values=("GET", "POST", "DELETE")),
    P("Type", pos=1, mandatory=True,
      values=("networks", "endpoints", "activities", "policylists", "endpointstats", "plugins")),
    P("Action", pos=2), P("Data", pos=3), P("Id", "object", pos=4),
])  # fmt: skip
async def invoke_hns_request(inv: Invocation) -> list[object]:
    """Invoke-HNSRequest -Method -Type [-Id] [-Action] [-Data]: one HNSCall."""
    path = "/" + to_str(inv.arg("Type"))
    ident = _guid(inv, "Id", hns_cmdlets.EMPTY_GUID)
    if ident != hns_cmdlets.EMPTY_GUID:
        path += "/" + ident
    if inv.arg("Action"):
        path += "/" + to_str(inv.arg("Action"))
    data = to_str(inv.arg("Data", ""))
    return _as_list(_hns_request(inv, to_str(inv.arg("Method")), path, data))
