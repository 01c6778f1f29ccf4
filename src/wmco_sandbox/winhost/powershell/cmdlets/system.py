"""System cmdlets: registry, OS identity, Windows capabilities, firewall, reboot.

Windows features (DISM and Server Manager) are in ``features.py``.

These are the cmdlets the user data and the operator's OS checks use. Their side effects are
what the host recognises a configured machine by: a ``DefaultShell`` registry value, firewall
rules, the OpenSSH capability and the sshd service state.
"""

from __future__ import annotations

import uuid

from wmco_sandbox.winhost.core.machine import CURRENT_VERSION_KEY, FirewallRule
from wmco_sandbox.winhost.powershell.binding import Invocation, P
from wmco_sandbox.winhost.powershell.errors import ErrorRecord, RebootRequested
from wmco_sandbox.winhost.powershell.registry import fq, register, strs
from wmco_sandbox.winhost.powershell.values import PSObject, to_str

__all__: list[str] = []

_HIVES = {"hklm:": "HKEY_LOCAL_MACHINE", "hkcu:": "HKEY_CURRENT_USER"}


def _reg_provider_path(key: str) -> str:
    hive, _, rest = key.partition("\\")
    return f"Microsoft.PowerShell.Core\\Registry::{_HIVES.get(hive.lower(), hive)}\\{rest}"


def _key_missing(inv: Invocation, path: str) -> ErrorRecord:
    return ErrorRecord(
        f"Cannot find path '{path}' because it does not exist.", fq(inv, "PathNotFound"),
        "ObjectNotFound", target=path, target_type="String", reason="ItemNotFoundException",
    )  # fmt: skip


@register(
    "Get-ItemProperty",
    [P("Path", "strings", pos=0), P("LiteralPath", "strings"), P("Name", "strings", pos=1)],
)
async def get_item_property(inv: Invocation) -> list[object]:
    """Get-ItemProperty on registry keys."""
    registry = inv.session.machine.registry
    out: list[object] = []
    for path in strs(inv, "Path") or strs(inv, "LiteralPath"):
        key = to_str(path).lower().rstrip("\\")
        values = registry.get(key)
        if values is None:
            inv.error(_key_missing(inv, to_str(path)))
            continue
        names = [n.lower() for n in strs(inv, "Name")]
        props = {shown: v for low, (shown, v, _) in values.items() if not names or low in names}
        for n in names:
            if n not in values:
                inv.error(ErrorRecord(
                    f"Property {n} does not exist at path {_reg_provider_path(key).split('::')[1]}.",
                    fq(inv, "System.Management.Automation.PSArgumentException"), "InvalidArgument",
                    target=n, target_type="String", reason="PSArgumentException",
                ))  # fmt: skip
        if not props:
            continue
        parent, _, _ = key.rpartition("\\")
        props.update({
            "PSPath": _reg_provider_path(to_str(path)), "PSParentPath": _reg_provider_path(parent),
            "PSChildName": to_str(path).rstrip("\\").rsplit("\\", 1)[-1], "PSDrive": "HKLM",
            "PSProvider": "Microsoft.PowerShell.Core\\Registry",
        })  # fmt: skip
        out.append(PSObject("System.Management.Automation.PSCustomObject", props, view="list"))
    return out


@register("New-ItemProperty", [
    P("Path", "strings", pos=0, mandatory=True), P("Name", pos=1, mandatory=True),
    P("Value", "object", pos=2), P("PropertyType", aliases=("type",), values=(
        "String", "ExpandString", "Binary", "DWord", "MultiString", "QWord", "Unknown")),
    P("Force", "switch"),
])  # fmt: skip
async def new_item_property(inv: Invocation) -> list[object]:
    """New-ItemProperty: create a registry value (-Force overwrites)."""
    registry = inv.session.machine.registry
    name = to_str(inv.arg("Name"))
    out: list[object] = []
    for path in strs(inv, "Path"):
        key = to_str(path).lower().rstrip("\\")
        if key not in registry:
            inv.error(_key_missing(inv, to_str(path)))
            continue
        if name.lower() in registry[key] and not inv.arg("Force"):
            inv.error(ErrorRecord(
                "The property already exists.", fq(inv, "System.IO.IOException"),
                "ResourceExists", target=_reg_provider_path(to_str(path)).split("::")[1],
                target_type="String", reason="IOException",
            ))  # fmt: skip
            continue
        value = inv.arg("Value")
        kind = to_str(inv.arg("PropertyType", "String"))
        registry[key][name.lower()] = (name, value, kind)
        out.append(PSObject("System.Management.Automation.PSCustomObject", {
            name: value, "PSPath": _reg_provider_path(to_str(path)),
            "PSParentPath": _reg_provider_path(to_str(path).rsplit("\\", 1)[0]),
            "PSChildName": to_str(path).rstrip("\\").rsplit("\\", 1)[-1], "PSDrive": "HKLM",
            "PSProvider": "Microsoft.PowerShell.Core\\Registry",
        }, view="list"))  # fmt: skip
    return out


@register("Get-CimInstance", [
    P("ClassName", pos=0), P("Namespace"), P("Filter"), P("Query"), P("ComputerName", "strings"),
])  # fmt: skip
async def get_cim_instance(inv: Invocation) -> list[object]:
    """Get-CimInstance Win32_OperatingSystem."""
    machine = inv.session.machine
    cls = to_str(inv.arg("ClassName"))
    if cls.lower() != "win32_operatingsystem":
        raise inv.fail(ErrorRecord(
            "Invalid class ", fq(inv, "HRESULT 0x80041010"), "MetadataError",
            target="root\\cimv2:" + cls, target_type="String", reason="CimException",
        ))  # fmt: skip
    reg = machine.registry[CURRENT_VERSION_KEY]
    build = to_str(reg["currentbuildnumber"][1])
    props: dict[str, object] = {
        "SystemDirectory": "C:\\Windows\\system32", "Organization": "",
        "BuildNumber": build, "RegisteredUser": "Windows User",
        "SerialNumber": "00454-60000-00001-AA" + build[-3:], "Version": f"10.0.{build}",
        "Caption": "Microsoft " + machine.image.product_name,
        "CSName": machine.computer_name, "OSArchitecture": "64-bit",
    }  # fmt: skip
    columns = [
        "SystemDirectory",
        "Organization",
        "BuildNumber",
        "RegisteredUser",
        "SerialNumber",
        "Version",
    ]
    return [
        PSObject(
            "Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_OperatingSystem",
            props,
            columns=columns,
        )
    ]


@register(
    "Add-WindowsCapability",
    [P("Name", mandatory=True), P("Online", "switch"), P("Source"), P("LimitAccess", "switch")],
)
async def add_windows_capability(inv: Invocation) -> list[object]:
    """Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0."""
    name = to_str(inv.arg("Name"))
    machine = inv.session.machine
    if name.lower() == "openssh.server~~~~0.0.1.0":
        machine.install_openssh()
    elif name.lower() != "openssh.client~~~~0.0.1.0":
        raise inv.fail(ErrorRecord(
            "Add-WindowsCapability failed. Error code = 0x800f0954", fq(inv, "Microsoft.Dism.Commands.AddWindowsCapabilityCommand"),
            "NotSpecified", reason="COMException",
        ))  # fmt: skip
    return [
        PSObject(
            "Microsoft.Dism.Commands.ImageObject",
            {"Path": "", "Online": True, "RestartNeeded": False},
            view="list",
        )
    ]


@register(
    "Restart-Computer",
    [P("Force", "switch"), P("ComputerName", "strings", pos=0), P("Wait", "switch")],
)
async def restart_computer(inv: Invocation) -> list[object]:
    """Restart-Computer: the machine reboots; the session ends with no exit status."""
    inv.session.machine.reboot_requested = True
    raise RebootRequested()


@register(
    "Rename-Computer",
    [P("NewName", pos=0, mandatory=True), P("Force", "switch"), P("Restart", "switch")],
)
async def rename_computer(inv: Invocation) -> list[object]:
    """Rename-Computer: takes effect at the next reboot (``hostname`` keeps the old name)."""
    machine = inv.session.machine
    machine.pending_computer_name = to_str(inv.arg("NewName"))
    inv.session.out.append(
        "WARNING: The changes will take effect after you restart the computer "
        f"{machine.computer_name}.\r\n"
    )
    return []


# -- firewall -----------------------------------------------------------------------------------
@register("New-NetFirewallRule", [
    P("DisplayName", mandatory=True), P("Name"), P("Direction", values=("Inbound", "Outbound")),
    P("Action", values=("NotConfigured", "Allow", "Block")), P("Protocol"), P("LocalPort", "strings"),
    P("RemotePort", "strings"), P("EdgeTraversalPolicy", values=("Block", "Allow", "DeferToUser", "DeferToApp")),
    P("Enabled", values=("True", "False")), P("Profile", "strings"), P("Program"), P("Description"),
])  # fmt: skip
async def new_net_firewall_rule(inv: Invocation) -> list[object]:
    """New-NetFirewallRule."""
    machine = inv.session.machine
    name = to_str(inv.arg("Name")) or "{" + str(uuid.uuid4()) + "}"
    if any(r.name.lower() == name.lower() for r in machine.firewall):
        raise inv.fail(ErrorRecord(
            "Cannot create a file when that file already exists.", fq(inv, "Windows System Error 183"),
            "ResourceExists", target="MSFT_NetFirewallRule", target_type="root/standardcimv2/MSFT_NetFirewallRule",
            reason="CimException",
        ))  # fmt: skip
    ports = ",".join(strs(inv, "LocalPort", ["Any"]))
    rule = FirewallRule(
        name, to_str(inv.arg("DisplayName")), to_str(inv.arg("Direction", "Inbound")),
        to_str(inv.arg("Action", "Allow")), to_str(inv.arg("Protocol", "Any")), ports,
        to_str(inv.arg("Enabled", "True")) == "True",
    )  # fmt: skip
    machine.firewall.append(rule)
    return [_rule_object(rule)]


def _rule_object(rule: FirewallRule) -> PSObject:
    return PSObject("CimInstance#root/standardcimv2/MSFT_NetFirewallRule", {
        "Name": rule.name, "DisplayName": rule.display_name, "Description": "", "DisplayGroup": "",
        "Group": "", "Enabled": rule.enabled, "Profile": "Any", "Platform": "{}",
        "Direction": rule.direction, "Action": rule.action, "EdgeTraversalPolicy": "Block",
        "LooseSourceMapping": False, "LocalOnlyMapping": False, "Owner": "", "PrimaryStatus": "OK",
        "Status": "The rule was parsed successfully from the store. (65536)",
        "EnforcementStatus": "NotApplicable", "PolicyStoreSource": "PersistentStore",
        "PolicyStoreSourceType": "Local",
    }, view="list")  # fmt: skip


@register("Get-NetFirewallRule", [
    P("Name", "strings", pos=0), P("DisplayName", "strings"),
    P("Direction", values=("Inbound", "Outbound")), P("Enabled", values=("True", "False")),
    P("Action", values=("NotConfigured", "Allow", "Block")),
])  # fmt: skip
async def get_net_firewall_rule(inv: Invocation) -> list[object]:
    """Get-NetFirewallRule -Name, or every rule (filtered by -Direction, -Enabled, -Action)."""
    rules = inv.session.machine.firewall
    if "Name" not in inv.bound and "DisplayName" not in inv.bound:
        direction, action = inv.arg("Direction"), inv.arg("Action")
        enabled = inv.arg("Enabled")
        return [
            _rule_object(r)
            for r in rules
            if (direction is None or r.direction.lower() == to_str(direction).lower())
            and (action is None or r.action.lower() == to_str(action).lower())
            and (enabled is None or r.enabled == (to_str(enabled) == "True"))
        ]
    out: list[object] = []
    key, attr = ("Name", "name") if "Name" in inv.bound else ("DisplayName", "display_name")
    for want in strs(inv, key):
        hits = [r for r in rules if getattr(r, attr).lower() == to_str(want).lower()]
        if not hits:
            prop = "InstanceID" if key == "Name" else "DisplayName"
            inv.error(ErrorRecord(
                f"No MSFT_NetFirewallRule objects found with property '{prop}' equal to '{want}'.  "
                "Verify the value of the property and retry.", fq(inv, f"CmdletizationQuery_NotFound_{prop}"),
                "ObjectNotFound", target=to_str(want), target_type="String", reason="CimJobException",
            ))  # fmt: skip
        out.extend(_rule_object(r) for r in hits)
    return out
