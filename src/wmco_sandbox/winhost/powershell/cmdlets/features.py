"""Windows features as two Windows tools see them: DISM and Server Manager.

The machine keeps one state per feature (``Machine.features``, DISM's words: ``Disabled``,
``EnablePending``, ``Enabled``...) under its Server Manager name (``containers``, ``hyper-v``).
Each tool shows it its own way:

* ``Get-WindowsOptionalFeature -Online -FeatureName X`` (DISM module): DISM's feature names
  (``Containers``, ``Microsoft-Hyper-V``) and states, as a list (windows-commands.md §2.8);
* ``Get-WindowsFeature [-Name X]`` (ServerManager module): Server Manager's names (``Containers``,
  ``Hyper-V``) and ``InstallState`` (``Available``, ``InstallPending``, ``Installed``...), as its
  ``Display Name / Name / Install State`` table; a name it does not know answers nothing;
* ``Install-WindowsFeature -Name X``: the feature becomes ``EnablePending`` until the next boot
  (the host turns it ``Enabled``) and the result row says ``Yes`` to a restart. Hyper-V has a
  prerequisite check: on a machine whose processor does not expose virtualisation
  (``Machine.virtualization_extensions`` false: a VM without nested virtualisation) it fails with
  Windows' words, ``A prerequisite check for the Hyper-V feature failed.`` /
  ``1. Hyper-V cannot be installed: The processor does not have required virtualization
  capabilities.`` (``Alteration_PrerequisiteCheck_Failed``; dsccommunity/HyperVDsc#184), and the
  row ``False   Maybe          Failed         {}``.

Over SSH ``Install-WindowsFeature`` needs ``$ProgressPreference = 'SilentlyContinue'``: without a
console its progress bar fails (§1.7).
"""

from __future__ import annotations

import asyncio
import fnmatch
from typing import Final

from wmco_sandbox.winhost.powershell.binding import Invocation, P
from wmco_sandbox.winhost.powershell.errors import ErrorRecord
from wmco_sandbox.winhost.powershell.registry import fq, register, strs
from wmco_sandbox.winhost.powershell.values import PSObject, to_str

__all__: list[str] = []

_SERVER_MANAGER: Final = {
    # key in Machine.features: (Name, Display Name, FeatureType)
    "containers": ("Containers", "Containers", "Feature"),
    "hyper-v": ("Hyper-V", "Hyper-V", "Role"),
}
_DISM: Final = {
    # DISM feature name (lower): (key in Machine.features, name shown)
    "containers": ("containers", "Containers"),
    "microsoft-hyper-v": ("hyper-v", "Microsoft-Hyper-V"),
}
_DESCRIPTIONS: Final = {
    "containers": "Provides services and tools to create and manage Windows Server Containers "
    "and their resources.",
    "hyper-v": "Hyper-V provides the services that you can use to create and manage virtual "
    "machines and their resources.",
}
_INSTALL_STATE: Final = {
    "Disabled": "Available",
    "EnablePending": "InstallPending",
    "Enabled": "Installed",
    "DisablePending": "UninstallPending",
    "DisabledWithPayloadRemoved": "Removed",
}
_HYPERV_PREREQUISITE: Final = (
    "A prerequisite check for the Hyper-V feature failed.\n"
    "1. Hyper-V cannot be installed: The processor does not have required virtualization "
    "capabilities."
)
_INSTALL_HEADER: Final = (
    "\r\nSuccess Restart Needed Exit Code      Feature Result\r\n"
    "------- -------------- ---------      --------------\r\n"
)


def _optional_feature_render(objs: list[PSObject]) -> str:
    blocks = []
    for o in objs:
        blocks.append(
            f"FeatureName      : {o.get('FeatureName')}\r\nDisplayName      : {o.get('DisplayName')}\r\n"
            f"Description      : {o.get('Description')}\r\nRestartRequired  : Possible\r\n"
            f"State            : {o.get('State')}\r\nCustomProperties : \r\n"
        )
    return "\r\n" + "\r\n".join(blocks) + "\r\n\r\n"


@register("Get-WindowsOptionalFeature", [
    P("FeatureName", "strings"), P("Online", "switch"), P("Path"), P("PackageName"),
])  # fmt: skip
async def get_windows_optional_feature(inv: Invocation) -> list[object]:
    """Get-WindowsOptionalFeature -Online -FeatureName Containers (DISM's names)."""
    if not inv.arg("Online") and not inv.arg("Path"):
        raise inv.fail(ErrorRecord(
            "Parameter set cannot be resolved using the specified named parameters.",
            fq(inv, "AmbiguousParameterSet"), "InvalidArgument", reason="ParameterBindingException",
        ))  # fmt: skip
    machine = inv.session.machine
    out: list[object] = []
    for name in strs(inv, "FeatureName", [shown for _, shown in _DISM.values()]):
        known = _DISM.get(to_str(name).lower())
        state = machine.features.get(known[0]) if known else None
        if known is None or state is None:
            inv.error(ErrorRecord(
                f"Feature name {name} is unknown.", fq(inv, "Microsoft.Dism.Commands.GetWindowsOptionalFeatureCommand"),
                "NotSpecified", reason="COMException",
            ))  # fmt: skip
            continue
        out.append(PSObject("Microsoft.Dism.Commands.AdvancedFeatureObject", {
            "FeatureName": known[1], "DisplayName": known[1],
            "Description": _DESCRIPTIONS[known[0]], "State": state,
        }, render=_optional_feature_render))  # fmt: skip
    return out


def _feature_table(objs: list[PSObject]) -> str:
    lines = [
        "",
        f"{'Display Name':<56}{'Name':<27}{'Install State':>13}",
        f"{'------------':<56}{'----':<27}{'-------------':>13}",
    ]
    for o in objs:
        mark = "[X]" if o.get("Installed") else "[ ]"
        shown = f"{mark} {o.get('DisplayName')}"
        lines.append(f"{shown:<56}{to_str(o.get('Name')):<27}{to_str(o.get('InstallState')):>13}")
    return "\r\n".join(lines) + "\r\n\r\n\r\n"


@register("Get-WindowsFeature", [
    P("Name", "strings", pos=0), P("ComputerName"), P("Vhd"), P("LogPath"),
])  # fmt: skip
async def get_windows_feature(inv: Invocation) -> list[object]:
    """Get-WindowsFeature [-Name X]: Server Manager's view; an unknown name answers nothing."""
    machine = inv.session.machine
    patterns = [to_str(n).lower() for n in strs(inv, "Name", ["*"])]
    out: list[object] = []
    for key, (name, display, kind) in _SERVER_MANAGER.items():
        state = machine.features.get(key)
        if state is None or not any(fnmatch.fnmatchcase(key, p) for p in patterns):
            continue
        install_state = _INSTALL_STATE.get(state, "Available")
        out.append(PSObject("Microsoft.Windows.ServerManager.Commands.Feature", {
            "DisplayName": display, "Name": name, "Installed": install_state == "Installed",
            "InstallState": install_state, "FeatureType": kind, "Path": display, "Depth": 1,
        }, render=_feature_table))  # fmt: skip
    return out


@register("Install-WindowsFeature", [
    P("Name", "strings", pos=0, mandatory=True), P("IncludeManagementTools", "switch"),
    P("IncludeAllSubFeature", "switch"), P("Restart", "switch"), P("Source", "strings"),
])  # fmt: skip
async def install_windows_feature(inv: Invocation) -> list[object]:
    """Install-WindowsFeature: the features become EnablePending until the next reboot."""
    session = inv.session
    if (
        not session.console
        and to_str(session.variables.get("progresspreference")) != "SilentlyContinue"
    ):
        raise inv.fail(ErrorRecord(
            'Win32 internal error "Access is denied" 0x5 occurred while reading the console output '
            "buffer. Contact Microsoft Customer Support Services.", fq(inv, "ReadConsoleOutput"),
            "ReadError", reason="HostException",
        ))  # fmt: skip
    machine = session.machine
    requested = strs(inv, "Name")
    for n in requested:
        if machine.features.get(n.lower()) is None:
            raise inv.fail(ErrorRecord(
                f"ArgumentNotValid: The role, role service, or feature name is not valid: '{n}'. "
                "The name was not found.", fq(inv, "NameDoesNotExist"), "InvalidArgument",
                target=n, target_type="String[]", reason="Exception",
            ))  # fmt: skip
    if "hyper-v" in (n.lower() for n in requested) and not machine.virtualization_extensions:
        session.out.append(_INSTALL_HEADER + "False   Maybe          Failed         {}\r\n\r\n\r\n")
        inv.error(ErrorRecord(
            _HYPERV_PREREQUISITE, fq(inv, "Alteration_PrerequisiteCheck_Failed"), "InvalidOperation",
            target="Hyper-V", target_type="ServerComponentWrapper", reason="Exception",
        ))  # fmt: skip
        return []
    if machine.profile.feature_install:
        installing = {n.lower() for n in requested} - machine.installing
        machine.installing |= installing
        try:
            await asyncio.sleep(machine.profile.feature_install)  # the host profile's install time
        finally:
            machine.installing -= installing
    changed = []
    for n in requested:
        key = n.lower()
        if machine.features[key] == "Disabled":
            machine.features[key] = "EnablePending"
        if machine.features[key] == "EnablePending":
            changed.append(_SERVER_MANAGER[key][1] if key in _SERVER_MANAGER else n)
    if changed:
        row = f"True    Yes            SuccessRest... {{{', '.join(changed)}}}\r\n"
        session.out.append(
            _INSTALL_HEADER
            + row
            + "WARNING: You must restart this server to finish the installation process.\r\n"
        )
    else:
        session.out.append(_INSTALL_HEADER + "True    No             NoChangeNeeded {}\r\n\r\n\r\n")
    return []
