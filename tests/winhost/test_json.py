"""ConvertTo-Json as Windows PowerShell 5.1 prints it.

Covers: -InputObject and pipeline input (one object vs. several, $null skipped), -Compress,
5.1's own indentation ("key":  value, nested blocks aligned after their key, empty arrays),
JavaScriptSerializer escapes (\\u0027, doubled backslashes), -Depth with 5.1's truncation of
deeper levels to strings and its default of 2, and the parameter errors.
"""

from __future__ import annotations

import asyncssh
import pytest
from winhost_helpers import connect, flat

from wmco_sandbox.winhost.host import WindowsHost
from wmco_sandbox.winhost.network.hns import HnsSubnet
from wmco_sandbox.winhost.powershell.cmdlets.json import convert_to_json, pretty_json


async def ps(host: WindowsHost, command: str) -> tuple[int | None, str, str]:
    result = await host.run(command, shell="powershell")
    return result.code, result.stdout, result.stderr


async def test_scalars_and_arrays(host: WindowsHost, client_key: asyncssh.SSHKey) -> None:
    conn = await connect(host, client_key)
    r = await conn.run("ConvertTo-Json -InputObject @('a', \"it's C:\\k\")", check=False)
    assert r.exit_status == 0
    assert r.stdout == '[\r\n    "a",\r\n    "it\\u0027s C:\\\\k"\r\n]\r\n'
    r = await conn.run("ConvertTo-Json -InputObject @('a', 1) -Compress", check=False)
    assert r.stdout == '["a",1]\r\n'
    r = await conn.run("ConvertTo-Json -InputObject @()", check=False)
    assert r.stdout == "[\r\n\r\n]\r\n"
    r = await conn.run("ConvertTo-Json -InputObject @() -Compress", check=False)
    assert r.stdout == "[]\r\n"
    r = await conn.run("ConvertTo-Json -InputObject '<a&b>'", check=False)
    assert r.stdout == '"\\u003ca\\u0026b\\u003e"\r\n'
    r = await conn.run("ConvertTo-Json -InputObject @(1, @(2, 3))", check=False)
    assert r.stdout == ("[\r\n    1,\r\n    [\r\n        2,\r\n        3\r\n    ]\r\n]\r\n")
    conn.close()


async def test_pipeline_input(host: WindowsHost) -> None:
    assert await ps(host, "'a', 'b' | ConvertTo-Json -Compress") == (0, '["a","b"]\r\n', "")
    # One piped object is written as itself, not as an array; $null is skipped.
    assert await ps(host, "@('a') | ConvertTo-Json") == (0, '"a"\r\n', "")
    assert await ps(host, "@() | ConvertTo-Json") == (0, "", "")
    assert await ps(host, "ConvertTo-Json -InputObject $null") == (0, "", "")


def test_pretty_printer_matches_51_layout() -> None:
    compact = '{"Name":"x","Subnets":[{"AddressPrefix":"10.0.0.0/24","Policies":[]}],"A":{}}'
    assert pretty_json(compact) == (
        "{\r\n"
        '    "Name":  "x",\r\n'
        '    "Subnets":  [\r\n'
        "                    {\r\n"
        '                        "AddressPrefix":  "10.0.0.0/24",\r\n'
        '                        "Policies":  [\r\n'
        "\r\n"
        "                                     ]\r\n"
        "                    }\r\n"
        "                ],\r\n"
        '    "A":  {\r\n'
        "\r\n"
        "          }\r\n"
        "}"
    )
    # Quotes and brackets inside strings are text, escaped quotes do not end a string.
    assert (
        pretty_json('["a\\"]{,", "b"]'.replace(", ", ",")) == '[\r\n    "a\\"]{,",\r\n    "b"\r\n]'
    )
    assert convert_to_json(True) == "true" and convert_to_json(None) == "null"


@pytest.fixture
async def with_network(containers_host: WindowsHost) -> WindowsHost:
    containers_host.machine.hns.create_network(
        "net", "Overlay", [HnsSubnet("10.132.0.0/24", "10.132.0.1", 4097)]
    )
    return containers_host


async def test_depth_truncates_deeper_levels_to_strings(with_network: WindowsHost) -> None:
    host = with_network
    net = host.machine.hns.network_named("net")
    assert net is not None
    subnet_id = net.subnets[0].id
    # Default depth 2: the array is level 0, the network 1, Subnets 2, each subnet 3 -> string.
    code, out, err = await ps(host, "ConvertTo-Json -InputObject @(Get-HnsNetwork) -Compress")
    assert (code, err) == (0, "")
    assert (
        '"Subnets":["@{AddressPrefix=10.132.0.0/24; GatewayAddress=10.132.0.1; '
        f"ID={subnet_id}; IpSubnets=System.Object[]; ObjectType=5; Policies=System.Object[]; "
        'State=0}"]'
    ) in out
    # Depth 1: the Subnets array itself is too deep; its custom objects print as nothing.
    _, out, _ = await ps(host, "ConvertTo-Json -InputObject @(Get-HnsNetwork) -Depth 1 -Compress")
    assert '"Subnets":""' in out and '"AdditionalParams":""' in out
    assert '"Health":"@{LastErrorCode=0; LastUpdateTime=133720000000000000}"' in out
    # Depth 5 keeps the VSID policy (level 5) as an object.
    _, out, _ = await ps(host, "ConvertTo-Json -InputObject @(Get-HnsNetwork) -Depth 5 -Compress")
    assert '"Policies":[{"Type":"VSID","VSID":4097}]' in out
    # Piped, the network is level 0, so default depth reaches one level further.
    _, out, _ = await ps(host, "Get-HnsNetwork | ConvertTo-Json -Compress")
    assert '"Subnets":[{"AddressPrefix":"10.132.0.0/24",' in out
    assert '"IpSubnets":"","ObjectType":5,"Policies":""' in out


async def test_endpoint_object_layout(with_network: WindowsHost) -> None:
    host = with_network
    net = host.machine.hns.network_named("net")
    assert net is not None
    ep = host.machine.hns.create_endpoint(net.id, "VIPEndpoint")
    code, out, _ = await ps(host, "Get-HnsEndpoint | ConvertTo-Json")
    assert code == 0
    assert out.startswith(
        "{\r\n"
        f'    "ID":  "{ep.id}",\r\n'
        '    "Name":  "VIPEndpoint",\r\n'
        f'    "VirtualNetwork":  "{net.id}",\r\n'
        '    "VirtualNetworkName":  "net",\r\n'
        '    "IPAddress":  "10.132.0.2",\r\n'
        '    "MacAddress":  "0E-2A-0A-84-00-02",\r\n'
        '    "PrefixLength":  24,\r\n'
        '    "GatewayAddress":  "10.132.0.1",\r\n'
        '    "State":  1,\r\n'
        '    "IsRemoteEndpoint":  false,\r\n'
        '    "Policies":  [\r\n'
        "\r\n"
        "                 ],\r\n"
        '    "Resources":  {\r\n'
        '                      "AdditionalParams":  {\r\n'
        "\r\n"
        "                                           },\r\n"
    )
    assert out.endswith('    "Version":  ' + str(ep.version) + "\r\n}\r\n")


async def test_parameter_errors(host: WindowsHost) -> None:
    code, _, err = await ps(host, "ConvertTo-Json -InputObject 'a' -Depth 0")
    assert code == 1
    assert "The 0 argument is less than the minimum allowed range of 1" in flat(err)
    code, _, err = await ps(host, "ConvertTo-Json -InputObject 'a' -Depth 101")
    assert code == 1 and "The maximum depth allowed for serialization is 100." in flat(err)
    code, _, err = await ps(host, "ConvertTo-Json -Compress")
    assert code == 1 and "missing mandatory parameters: InputObject." in flat(err)
    code, _, err = await ps(host, "ConvertTo-Json -InputObject 'a' -Depth x")
    assert code == 1 and "CannotConvertArgumentNoMessage" in err
