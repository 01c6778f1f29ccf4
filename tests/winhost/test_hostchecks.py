"""The read-only forms ``wmco preflight`` and ``wmco logs`` send, answered as Windows answers them.

Each form runs through the simulated PowerShell (no SSH): the answer's shape, the knob that
changes it, and the strictness for forms outside the contract.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from wmco_sandbox.winhost.core.machine import FirewallRule
from wmco_sandbox.winhost.host import WindowsHost

KEYS = "C:\\ProgramData\\ssh\\administrators_authorized_keys"


@pytest.fixture
def bare() -> WindowsHost:
    return WindowsHost(preinstalled_sshd=True)


async def ps(host: WindowsHost, command: str) -> tuple[int | None, str, str]:
    result = await host.run(command, shell="powershell")
    return result.code, result.stdout, result.stderr


async def test_get_date_round_trip_follows_the_clock_knob(bare: WindowsHost) -> None:
    code, out, _ = await ps(bare, "Get-Date -Format 'o'")
    bare.machine.clock_offset = -3600.0
    _, behind, _ = await ps(bare, "Get-Date -Format 'o'")

    assert code == 0
    text = out.strip()
    assert len(text.split(".")[1]) == len("1234567+00:00")
    now = dt.datetime.fromisoformat(text[:26] + text[-6:])
    assert abs((now - dt.datetime.now(dt.UTC)).total_seconds()) < 5
    late = dt.datetime.fromisoformat(behind.strip()[:26] + behind.strip()[-6:])
    assert 3590 < (now - late).total_seconds() < 3610


async def test_get_date_other_forms_are_not_simulated(bare: WindowsHost) -> None:
    code, _, err = await ps(bare, "Get-Date")
    assert code == 1 and "is not simulated" in err


async def test_get_psdrive_reports_the_volume_and_a_capacity(bare: WindowsHost) -> None:
    _, free, _ = await ps(bare, "(Get-PSDrive -Name 'C').Free")
    _, used, _ = await ps(bare, "(Get-PSDrive -Name 'C').Used")
    assert int(free) + int(used) == bare.machine.volume_size
    bare.machine.disk.capacity = bare.machine.disk.used + 1000
    _, free, _ = await ps(bare, "(Get-PSDrive -Name 'C').Free")
    assert int(free) == 1000
    code, _, err = await ps(bare, "Get-PSDrive -Name 'Q'")
    assert code == 1
    assert "Cannot find drive. A drive with the name 'Q' does not exist." in err


async def test_resolve_dns_name_answers_from_the_knobs(bare: WindowsHost) -> None:
    bare.machine.dns_names["api.test"] = ["10.0.0.1"]
    bare.machine.dns_ptr[bare.address] = "win-a.test"
    _, a, _ = await ps(
        bare, "ConvertTo-Json -InputObject @(Resolve-DnsName -Name 'api.test' -Type A) -Compress"
    )
    _, ptr, _ = await ps(
        bare,
        f"ConvertTo-Json -InputObject @(Resolve-DnsName -Name '{bare.address}' -Type PTR) -Compress",
    )
    _, missing, err = await ps(
        bare, "ConvertTo-Json -InputObject @(Resolve-DnsName -Name 'nope.test' -Type A) -Compress"
    )

    assert [(r["Type"], r["IPAddress"]) for r in json.loads(a)] == [(1, "10.0.0.1")]
    assert [(r["Type"], r["NameHost"]) for r in json.loads(ptr)] == [(12, "win-a.test")]
    assert json.loads(missing) == []
    assert "Resolve-DnsName : nope.test : DNS name does not exist" in err
    assert "DNS_ERROR_RCODE_NAME_ERROR,Microsoft.DnsClient.Commands.ResolveDnsName" in err


async def test_port_filters_of_enabled_inbound_allow_rules(bare: WindowsHost) -> None:
    bare.machine.firewall.append(FirewallRule("kubelet", "kubelet", local_port="10250"))
    bare.machine.firewall.append(FirewallRule("off", "off", local_port="9182", enabled=False))
    bare.machine.firewall.append(FirewallRule("deny", "deny", local_port="9182", action="Block"))
    command = (
        "ConvertTo-Json -InputObject @(Get-NetFirewallRule -Direction Inbound -Enabled True "
        "-Action Allow | Get-NetFirewallPortFilter) -Compress"
    )
    code, out, _ = await ps(bare, command)

    assert code == 0
    assert sorted(r["LocalPort"] for r in json.loads(out)) == ["10250", "22"]
    code, _, err = await ps(bare, "Get-NetFirewallPortFilter")
    assert code == 1 and "is not simulated" in err


async def test_icacls_without_options_lists_the_acl(host: WindowsHost) -> None:
    code, out, _ = await ps(host, f"icacls.exe '{KEYS}'; exit $LASTEXITCODE")
    assert code == 0
    pad = " " * (len(KEYS) + 1)
    assert out == (
        f"{KEYS} NT AUTHORITY\\SYSTEM:(F)\r\n{pad}BUILTIN\\Administrators:(F)\r\n\r\n"
        "Successfully processed 1 files; Failed processing 0 files\r\n"
    )
    code, out, _ = await ps(host, "icacls.exe 'C:\\ProgramData'; exit $LASTEXITCODE")
    assert "NT AUTHORITY\\Authenticated Users:(I)(RX)" in out


async def test_get_content_tail(bare: WindowsHost) -> None:
    bare.machine.disk.write_file("C:\\x.log", b"a\r\nb\r\nc\r\n")
    _, two, _ = await ps(bare, "Get-Content -LiteralPath 'C:\\x.log' -Tail 2")
    _, none, _ = await ps(bare, "Get-Content -LiteralPath 'C:\\x.log' -Tail 0")
    _, more, _ = await ps(bare, "Get-Content -LiteralPath 'C:\\x.log' -Tail 10")
    assert two == "b\r\nc\r\n"
    assert none == ""
    assert more == "a\r\nb\r\nc\r\n"
