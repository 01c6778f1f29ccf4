"""Read-only cmdlets a host is checked with before it joins: clock, free space, DNS, port filters.

``wmco preflight`` reads a host it has never configured; these are the queries it sends
(``docs/windows-surface.md``, "Preflight"). None of them changes the machine. Only the forms in
the contract are simulated; any other form fails with a ``NotSimulated`` error instead of
answering something a real host would not.

- ``Get-Date -Format 'o'``: the host's clock (real time + ``machine.clock_offset``), round-trip
  format with seven fractional digits and the UTC offset (the simulated hosts run in UTC).
- ``Get-PSDrive -Name 'C'``: ``Used`` and ``Free`` bytes of the system volume.
- ``Resolve-DnsName -Name X -Type A|PTR``: the host resolver's answers (``machine.dns_names``,
  ``machine.dns_ptr``); a name it cannot resolve is the DNS client's ``DNS name does not exist``.
- ``Get-NetFirewallPortFilter``: the port filter of each rule piped in.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time

from wmco_sandbox.winhost.core.machine import Machine
from wmco_sandbox.winhost.powershell.binding import Invocation, P
from wmco_sandbox.winhost.powershell.errors import ErrorRecord
from wmco_sandbox.winhost.powershell.registry import register, strs
from wmco_sandbox.winhost.powershell.values import PSObject, to_str

__all__: list[str] = []

_DNS_CLASS = "Microsoft.DnsClient.Commands.ResolveDnsName"
_RECORD_TYPES = ("A", "AAAA", "A_AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "ANY")


def _not_simulated(inv: Invocation, form: str) -> ErrorRecord:
    return ErrorRecord(
        f"simulated host: {inv.name} {form} is not simulated (only the forms listed in "
        "docs/windows-surface.md are).", "NotSimulated", "NotImplemented",
        target=form, target_type="String", reason="NotSupportedException",
    )  # fmt: skip


@register("Get-Date", [P("Date", "object", pos=0), P("Format"), P("UFormat")])
async def get_date(inv: Invocation) -> list[object]:
    """``Get-Date -Format 'o'``: the host's local time (UTC) in .NET's round-trip format."""
    if "Date" in inv.bound or "UFormat" in inv.bound or to_str(inv.arg("Format")) != "o":
        raise inv.fail(_not_simulated(inv, "without -Format 'o'"))
    now = dt.datetime.fromtimestamp(time.time() + inv.session.machine.clock_offset, dt.UTC)
    ticks = now.microsecond * 10
    return [f"{now:%Y-%m-%dT%H:%M:%S}.{ticks:07d}+00:00"]


def volume(machine: Machine) -> tuple[int, int]:
    """``(Used, Free)`` bytes of C: as ``Get-PSDrive`` reports them."""
    used = machine.disk.used + machine.system_used
    if machine.disk.capacity is not None:
        return used, max(0, machine.disk.capacity - machine.disk.used)
    return used, max(0, machine.volume_size - used)


@register("Get-PSDrive", [
    P("Name", "strings", pos=0), P("PSProvider", "strings"), P("Scope"),
])  # fmt: skip
async def get_psdrive(inv: Invocation) -> list[object]:
    """``Get-PSDrive -Name 'C'``: the system volume's used and free bytes."""
    out: list[object] = []
    for name in strs(inv, "Name") or [""]:
        if name.lower() != "c":
            if not name:
                raise inv.fail(_not_simulated(inv, "without -Name 'C'"))
            inv.error(ErrorRecord(
                f"Cannot find drive. A drive with the name '{name}' does not exist.",
                "GetLocationNoMatchingDrive,Microsoft.PowerShell.Commands.GetPSDriveCommand",
                "ObjectNotFound", target=name, target_type="String",
                reason="DriveNotFoundException",
            ))  # fmt: skip
            continue
        used, free = volume(inv.session.machine)
        out.append(PSObject("System.Management.Automation.PSDriveInfo", {
            "Name": "C", "Used": used, "Free": free,
            "Provider": "Microsoft.PowerShell.Core\\FileSystem", "Root": "C:\\",
            "CurrentLocation": "Users\\Administrator",
        }, columns=["Name", "Used", "Free", "Provider", "Root", "CurrentLocation"]))  # fmt: skip
    return out


def _reverse_name(address: str) -> str:
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa"


def _dns_missing(inv: Invocation, name: str) -> ErrorRecord:
    return ErrorRecord(
        f"{name} : DNS name does not exist", f"DNS_ERROR_RCODE_NAME_ERROR,{_DNS_CLASS}",
        "ResourceUnavailable", target=name, target_type="String", reason="Win32Exception",
    )  # fmt: skip


@register("Resolve-DnsName", [
    P("Name", pos=0, mandatory=True), P("Type", pos=1, values=_RECORD_TYPES),
    P("DnsOnly", "switch"), P("NoHostsFile", "switch"), P("QuickTimeout", "switch"),
    P("Server", "strings"),
])  # fmt: skip
async def resolve_dns_name(inv: Invocation) -> list[object]:
    """``Resolve-DnsName -Name X -Type A`` and ``-Type PTR`` of an IPv4 address."""
    machine = inv.session.machine
    name = to_str(inv.arg("Name"))
    kind = to_str(inv.arg("Type", "A_AAAA")).upper()
    if kind == "PTR":
        try:
            address = str(ipaddress.IPv4Address(name))
        except ValueError:
            raise inv.fail(_not_simulated(inv, "-Type PTR of a name")) from None
        reverse = _reverse_name(address)
        target = machine.dns_ptr.get(address)
        if target is None:
            inv.error(_dns_missing(inv, reverse))
            return []
        return [PSObject("Microsoft.DnsClient.Commands.DnsRecord_PTR", {
            "Name": reverse, "Type": 12, "CharacterSet": 1, "Section": 1, "DataLength": 8,
            "TTL": 600, "NameHost": target,
        }, columns=["Name", "Type", "TTL", "Section", "NameHost"])]  # fmt: skip
    if kind != "A":
        raise inv.fail(_not_simulated(inv, f"-Type {kind}"))
    key = name.lower().rstrip(".")
    addresses = list(machine.dns_names.get(key, []))
    if not addresses and key == machine.computer_name.lower():
        addresses = [machine.facts.address]
    if not addresses:
        inv.error(_dns_missing(inv, name))
        return []
    return [
        PSObject(
            "Microsoft.DnsClient.Commands.DnsRecord_A",
            {
                "Name": name,
                "Type": 1,
                "CharacterSet": 1,
                "Section": 1,
                "DataLength": 4,
                "TTL": 600,
                "Address": ip,
                "IPAddress": ip,
                "IP4Address": ip,
            },
            columns=["Name", "Type", "TTL", "Section", "IPAddress"],
        )
        for ip in addresses
    ]


@register("Get-NetFirewallPortFilter", [
    P("AssociatedNetFirewallRule", "object"), P("Protocol", "strings"), P("All", "switch"),
])  # fmt: skip
async def get_net_firewall_port_filter(inv: Invocation) -> list[object]:
    """The port filters of the rules piped in (``Get-NetFirewallRule ... | <this>``)."""
    if not inv.piped or "Protocol" in inv.bound or "AssociatedNetFirewallRule" in inv.bound:
        raise inv.fail(_not_simulated(inv, "without rules piped in"))
    rules = {rule.name.lower(): rule for rule in inv.session.machine.firewall}
    out: list[object] = []
    for item in inv.input:
        name = to_str(item.get("Name")) if isinstance(item, PSObject) else ""
        rule = rules.get(name.lower())
        if rule is None:
            continue
        ports = [p.strip() for p in rule.local_port.split(",") if p.strip()] or ["Any"]
        out.append(PSObject(
            "Microsoft.Management.Infrastructure.CimInstance#root/standardcimv2/MSFT_NetProtocolPortFilter",
            {"Protocol": rule.protocol, "LocalPort": ports[0] if len(ports) == 1 else ports,
             "RemotePort": "Any", "IcmpType": "Any", "DynamicTarget": "Any",
             "InstanceID": rule.name},
            view="list",
        ))  # fmt: skip
    return out
