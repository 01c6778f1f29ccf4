"""HNS as the operator sees it over SSH: in-box cmdlets, hns.psm1 functions, connectivity blips.

Covers every form of contract §3 literally: listing networks and endpoints as one JSON line,
creating and attaching the VIP endpoint through hns.psm1 (``$ep.ID``, ``| Out-Null``), removal by
name (and the dropped connection when the last switch network goes), the Containers feature
gate (CommandNotFound without it), Import-Module's errors, module function scoping, the v1
fields, and what a reboot keeps.
"""

from __future__ import annotations

import json

import asyncssh
from winhost_helpers import HNS_PSM1, connect, flat, run_dropped

from wmco_sandbox.winhost.host import WindowsHost
from wmco_sandbox.winhost.network.hns import HnsNetwork, HnsSubnet

LIST_NETWORKS = "ConvertTo-Json -InputObject @(Get-HnsNetwork) -Depth 5 -Compress"
LIST_ENDPOINTS = "ConvertTo-Json -InputObject @(Get-HnsEndpoint) -Depth 5 -Compress"
OVERLAY = "OVNKubernetesHybridOverlayNetwork"
BASE = "BaseOVNKubernetesHybridOverlayNetwork"


def vip_form(network_id: str) -> str:
    return (
        "$ErrorActionPreference = 'Stop'; Import-Module -DisableNameChecking 'C:\\Temp\\hns.psm1'; "
        f"$ep = New-HNSEndpoint -NetworkId '{network_id}' -Name 'VIPEndpoint'; "
        "Attach-HNSHostEndpoint -EndpointID $ep.ID -CompartmentID 1 | Out-Null; "
        "ConvertTo-Json -InputObject @($ep) -Depth 5 -Compress"
    )


def remove_form(kind: str, name: str) -> str:
    return f"Get-Hns{kind} | Where-Object {{ $_.Name -eq '{name}' }} | Remove-Hns{kind}"


def make_networks(host: WindowsHost) -> tuple[HnsNetwork, HnsNetwork]:
    """The two hybrid-overlay networks (the first one blips: make them before connecting)."""
    hns = host.machine.hns
    base = hns.create_network(
        BASE, "Overlay", [HnsSubnet("100.64.0.0/30", "100.64.0.2", 4098)],
        management_ip=host.address,
    )  # fmt: skip
    overlay = hns.create_network(
        OVERLAY, "Overlay", [HnsSubnet("10.132.0.0/24", "10.132.0.1", 4097)],
        management_ip=host.address, persistent=False, policies=[{"Type": "HostRoute"}],
    )  # fmt: skip
    return base, overlay


async def write_module(host: WindowsHost) -> None:
    result = await host.run(
        "New-Item -ItemType Directory -Force -Path 'C:\\Temp' | Out-Null", shell="powershell"
    )
    assert result.code == 0
    host.machine.disk.write_file("C:\\Temp\\hns.psm1", HNS_PSM1.encode())


async def test_without_containers_the_hns_cmdlets_do_not_exist(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    conn = await connect(host, client_key)
    alone = await conn.run("Get-HnsNetwork", check=False)
    assert alone.exit_status == 1
    assert "Get-HnsNetwork : The term 'Get-HnsNetwork' is not recognized" in flat(alone.stderr)
    assert "FullyQualifiedErrorId : CommandNotFoundException" in str(alone.stderr)
    for name in ("Get-HnsEndpoint", "Remove-HnsNetwork", "Remove-HnsEndpoint"):
        r = await conn.run(name, check=False)
        assert r.exit_status == 1 and "CommandNotFoundException" in str(r.stderr), name
    # Inside @() the error ends only the inner statement: ConvertTo-Json still prints [].
    listed = await conn.run(LIST_NETWORKS, check=False)
    assert "CommandNotFoundException" in str(listed.stderr)
    assert listed.stdout == "[]\r\n"
    conn.close()


async def test_lists_networks_and_endpoints_as_one_json_line(
    containers_host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    host = containers_host
    conn = await connect(host, client_key)
    empty = await conn.run(LIST_NETWORKS, check=False)
    assert (empty.exit_status, empty.stdout, empty.stderr) == (0, "[]\r\n", "")
    conn.close()
    _, overlay = make_networks(host)
    vip = host.machine.hns.create_endpoint(overlay.id, "VIPEndpoint")
    conn = await connect(host, client_key)
    listed = await conn.run(LIST_NETWORKS, check=False)
    assert listed.exit_status == 0 and listed.stderr == ""
    assert str(listed.stdout).count("\r\n") == 1
    networks = {n["Name"]: n for n in json.loads(str(listed.stdout))}
    got = networks[OVERLAY]
    assert got["ID"] == overlay.id == overlay.id.upper()
    assert got["Type"] == "Overlay" and got["Flags"] == 8 and networks[BASE]["Flags"] == 0
    assert got["ManagementIP"] == host.address
    assert got["Subnets"][0]["AddressPrefix"] == "10.132.0.0/24"
    assert got["Subnets"][0]["GatewayAddress"] == "10.132.0.1"
    assert got["Subnets"][0]["Policies"] == [{"Type": "VSID", "VSID": 4097}]
    assert got["DrMacAddress"].startswith("00-15-5D-")
    assert got["Policies"] == [{"Type": "HostRoute"}]
    for field in ("ActivityId", "AdditionalParams", "CurrentEndpointCount", "Extensions",
                  "Health", "IPv6", "LayeredOn", "MacPools", "NetworkAdapterName", "Resources",
                  "State", "TotalEndpoints", "Version"):  # fmt: skip
        assert field in got, field
    endpoints = json.loads(str((await conn.run(LIST_ENDPOINTS, check=False)).stdout))
    assert [e["Name"] for e in endpoints] == ["VIPEndpoint"]
    ep = endpoints[0]
    assert (ep["ID"], ep["VirtualNetwork"], ep["VirtualNetworkName"]) == (
        vip.id,
        overlay.id,
        OVERLAY,
    )
    assert (ep["IPAddress"], ep["PrefixLength"], ep["GatewayAddress"]) == (
        "10.132.0.2",
        24,
        "10.132.0.1",
    )
    assert ep["MacAddress"] == "0E-2A-0A-84-00-02" and ep["IsRemoteEndpoint"] is False
    conn.close()


async def test_vip_endpoint_is_created_and_attached_through_hns_psm1(
    containers_host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    host = containers_host
    _, overlay = make_networks(host)
    await write_module(host)
    conn = await connect(host, client_key)
    result = await conn.run(vip_form(overlay.id), check=False)
    assert (result.exit_status, result.stderr) == (0, "")
    [ep] = json.loads(str(result.stdout))
    assert ep["Name"] == "VIPEndpoint" and ep["VirtualNetwork"] == overlay.id
    assert ep["IPAddress"] == "10.132.0.2"
    state = host.machine.hns.endpoint(ep["ID"])
    assert state is not None and state.host_compartment == 1
    # A lower-case network ID is the same GUID.
    second = await conn.run(
        vip_form(overlay.id.lower()).replace("VIPEndpoint", "Other"), check=False
    )
    assert second.exit_status == 0
    assert json.loads(str(second.stdout))[0]["IPAddress"] == "10.132.0.3"
    conn.close()


async def test_vip_endpoint_errors(
    containers_host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    host = containers_host
    make_networks(host)
    conn = await connect(host, client_key)
    missing = await conn.run(vip_form("5C0FFEE0-0000-0000-0000-000000000000"), check=False)
    assert missing.exit_status == 1
    assert (
        "Import-Module : The specified module 'C:\\Temp\\hns.psm1' was not loaded because no "
        in flat(missing.stderr)
    )
    assert "Modules_ModuleNotFound,Microsoft.PowerShell.Commands.ImportModuleCommand" in flat(
        missing.stderr
    )
    await write_module(host)
    unknown = await conn.run(vip_form("5C0FFEE0-0000-0000-0000-000000000000"), check=False)
    assert unknown.exit_status == 1 and unknown.stdout == ""
    assert (
        "Invoke-HNSRequest : @{Success=False; Error=Element not found.; ErrorCode=2147943568}"
        in flat(unknown.stderr)
    )
    assert "WriteErrorException,Invoke-HNSRequest" in str(unknown.stderr)
    not_a_guid = await conn.run(vip_form("not-a-guid"), check=False)
    assert not_a_guid.exit_status == 1
    assert 'Cannot convert value "not-a-guid" to type "System.Guid"' in flat(not_a_guid.stderr)
    assert not host.machine.hns.endpoints
    conn.close()


async def test_import_module_scopes_the_declared_functions(
    containers_host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    host = containers_host
    await write_module(host)
    conn = await connect(host, client_key)
    before = await conn.run("Invoke-HNSRequest -Method GET -Type networks", check=False)
    assert before.exit_status == 1 and "CommandNotFoundException" in str(before.stderr)
    checked = await conn.run("Import-Module 'C:\\Temp\\hns.psm1'", check=False)
    assert checked.exit_status == 0
    assert str(checked.stdout).startswith(
        "WARNING: The names of some imported commands from the module 'hns' include unapproved verbs"
    )
    quiet = await conn.run("Import-Module -DisableNameChecking 'C:\\Temp\\hns.psm1'", check=False)
    assert (quiet.exit_status, quiet.stdout, quiet.stderr) == (0, "", "")
    listed = await conn.run(
        "Import-Module -DisableNameChecking 'C:\\Temp\\hns.psm1'; Invoke-HNSRequest GET networks",
        check=False,
    )
    assert listed.exit_status == 0 and listed.stderr == ""
    # Declared but not exported (Export-ModuleMember lists three): not a command at all.
    hidden = await conn.run(
        "Import-Module -DisableNameChecking 'C:\\Temp\\hns.psm1'; Get-VmComputeNativeMethods",
        check=False,
    )
    assert hidden.exit_status == 1 and "CommandNotFoundException" in str(hidden.stderr)
    conn.close()
    host.machine.disk.write_file("C:\\Temp\\extra.psm1", b"function New-HnsNetwork\r\n{\r\n}\r\n")
    conn = await connect(host, client_key)
    unsimulated = await conn.run(
        "Import-Module -DisableNameChecking 'C:\\Temp\\extra.psm1'; New-HnsNetwork", check=False
    )
    assert unsimulated.exit_status == 1
    assert (
        "the function 'New-HnsNetwork' of module 'C:\\Temp\\extra.psm1' is not simulated"
        in flat(unsimulated.stderr)
    )
    conn.close()


async def test_hns_psm1_without_containers_cannot_load_vmcompute(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    await write_module(host)
    conn = await connect(host, client_key)
    result = await conn.run(vip_form("5C0FFEE0-0000-0000-0000-000000000000"), check=False)
    assert result.exit_status == 1
    assert "Unable to load DLL 'vmcompute.dll'" in flat(result.stderr)
    conn.close()


async def test_remove_by_name(containers_host: WindowsHost, client_key: asyncssh.SSHKey) -> None:
    host = containers_host
    _, overlay = make_networks(host)
    host.machine.hns.create_endpoint(overlay.id, "VIPEndpoint")
    blips = host.machine.hns.blips
    conn = await connect(host, client_key)
    none = await conn.run(remove_form("Endpoint", "nosuch"), check=False)
    assert (none.exit_status, none.stdout, none.stderr) == (0, "", "")
    ep = await conn.run(remove_form("Endpoint", "VIPEndpoint"), check=False)
    assert (ep.exit_status, ep.stdout, ep.stderr) == (0, "", "")
    assert not host.machine.hns.endpoints
    # The base network still holds the virtual switch: no blip, the exec completes.
    net = await conn.run(remove_form("Network", OVERLAY), check=False)
    assert (net.exit_status, net.stdout, net.stderr) == (0, "", "")
    assert host.machine.hns.network_named(OVERLAY) is None
    assert host.machine.hns.blips == blips
    assert (await conn.run(remove_form("Network", "nosuch"), check=False)).exit_status == 0
    # The last switch network: every connection drops, this exec gets no exit status.
    other = await connect(host, client_key)
    assert await run_dropped(conn, remove_form("Network", BASE))
    assert host.machine.hns.networks == {}
    assert host.machine.hns.blips == blips + 1
    assert await run_dropped(other, "hostname")
    assert host.command_log[-1].exit_status is None
    again = await connect(host, client_key)
    assert (await again.run(LIST_NETWORKS, check=False)).stdout == "[]\r\n"
    again.close()


async def test_first_switch_network_drops_connections(
    containers_host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    host = containers_host
    conn = await connect(host, client_key)
    assert (await conn.run("hostname", check=False)).exit_status == 0
    host.machine.hns.create_network("nat", "NAT", [HnsSubnet("172.16.0.0/24", "172.16.0.1")])
    assert (await conn.run("hostname", check=False)).exit_status == 0  # NAT has no vSwitch
    make_networks(host)
    assert await run_dropped(conn, "hostname")


async def test_reboot_keeps_only_persistent_networks(
    containers_host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    host = containers_host
    _, overlay = make_networks(host)
    host.machine.hns.create_endpoint(overlay.id, "VIPEndpoint")
    await host.reboot()
    conn = await connect(host, client_key)
    names = [n["Name"] for n in json.loads(str((await conn.run(LIST_NETWORKS)).stdout))]
    assert names == [BASE]
    assert (await conn.run(LIST_ENDPOINTS)).stdout == "[]\r\n"
    conn.close()
