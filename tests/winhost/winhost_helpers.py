"""Helpers for the simulated Windows host tests (user data, SSH clients, waiting)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncssh

from wmco_sandbox.winhost.host import WindowsHost


def make_user_data(
    *public_keys: str, icacls: bool = True, shell: bool = True, capability: bool = True
) -> str:
    """The operator's user data (docs/windows-surface.md), with knobs to break it."""
    keys = ", ".join("'" + k.replace("'", "''") + "'" for k in public_keys)
    lines = [
        "$ErrorActionPreference = 'Stop'",
        "$ProgressPreference = 'SilentlyContinue'",
    ]
    if capability:
        lines.append("Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0'")
    if shell:
        lines.append(
            "New-ItemProperty -Path 'HKLM:\\SOFTWARE\\OpenSSH' -Name 'DefaultShell' -Value "
            "'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe' -PropertyType String -Force"
        )
    lines += [
        "New-NetFirewallRule -DisplayName 'ContainerLogsPort' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 10250 -EdgeTraversalPolicy Allow",
        "New-NetFirewallRule -DisplayName 'WindowsExporter' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 9182 -EdgeTraversalPolicy Allow",
        "if (-not (Get-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -ErrorAction SilentlyContinue)) { New-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -DisplayName 'OpenSSH Server (sshd)' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 22 }",
        "Set-Service -Name 'sshd' -StartupType 'Automatic'",
        "Start-Service -Name 'sshd'",
        f"Set-Content -LiteralPath 'C:\\ProgramData\\ssh\\administrators_authorized_keys' -Value {keys} -Encoding ascii",
    ]
    if icacls:
        lines.append(
            "icacls.exe 'C:\\ProgramData\\ssh\\administrators_authorized_keys' /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'"
        )
    lines.append("Restart-Service -Name 'sshd'")
    return "<powershell>\n" + "\n".join(lines) + "\n</powershell>\n<persist>true</persist>\n"


def public_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


async def connect(
    host: WindowsHost, key: asyncssh.SSHKey, user: str = "Administrator"
) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        host.address,
        host.port,
        username=user,
        client_keys=[key],
        known_hosts=([host.host_public_key], [], []),
        agent_path=None,
        config=None,
        connect_timeout=5,
    )


async def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll a condition with a deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)


# A module shaped like WMCO's hns.psm1: the three functions with their real param blocks (the
# simulated host reads the declarations and Export-ModuleMember, not the bodies).
HNS_PSM1 = """\
function Get-VmComputeNativeMethods()
{
    $signature = @'
                 [DllImport("vmcompute.dll")]
                 public static extern void HNSCall([MarshalAs(UnmanagedType.LPWStr)] string method, [MarshalAs(UnmanagedType.LPWStr)] string path, [MarshalAs(UnmanagedType.LPWStr)] string request, [MarshalAs(UnmanagedType.LPWStr)] out string response);
'@
    Add-Type -MemberDefinition $signature -Namespace VmCompute.PrivatePInvoke -Name NativeMethods -PassThru
}

function New-HnsEndpoint
{
    param
    (
        [parameter(Mandatory=$false, Position = 0)] [string] $JsonString = $null,
        [parameter(Mandatory = $false, Position = 0)] [Guid] $NetworkId,
        [parameter(Mandatory = $false)] [string] $Name,
        [parameter(Mandatory = $false)] [string] $IPAddress,
        [parameter(Mandatory = $false)] [string] $Gateway,
        [parameter(Mandatory = $false)] [string] $MacAddress,
        [parameter(Mandatory = $false)] [switch] $EnableOutboundNat
    )
    Process { return Invoke-HNSRequest -Method POST -Type endpoints -Data $EndpointData }
}

function Attach-HnsHostEndpoint
{
    param
    (
     [parameter(Mandatory=$true)] [Guid] $EndpointID,
     [parameter(Mandatory=$true)] [int] $CompartmentID
     )
    $request = @{ SystemType = "Host"; CompartmentId = $CompartmentID; };
    return Invoke-HNSRequest -Method POST -Type endpoints -Data (ConvertTo-Json $request) -Action "attach" -Id $EndpointID
}

function Invoke-HNSRequest
{
    param
    (
        [ValidateSet('GET', 'POST', 'DELETE')]
        [parameter(Mandatory=$true)] [string] $Method,
        [ValidateSet('networks', 'endpoints', 'activities', 'policylists', 'endpointstats', 'plugins')]
        [parameter(Mandatory=$true)] [string] $Type,
        [parameter(Mandatory=$false)] [string] $Action = $null,
        [parameter(Mandatory=$false)] [string] $Data = $null,
        [parameter(Mandatory=$false)] [Guid] $Id = [Guid]::Empty
    )
    $hnsApi = Get-VmComputeNativeMethods
    $hnsApi::HNSCall($Method, $hnsPath, "$request", [ref] $response);
    return $output;
}

Export-ModuleMember -Function New-HNSEndpoint

Export-ModuleMember -Function Attach-HNSHostEndpoint

Export-ModuleMember -Function Invoke-HNSRequest
""".replace("\n", "\r\n")


async def enable_containers(host: WindowsHost) -> None:
    """Install the Containers feature the operator's way and reboot so that it is Enabled."""
    result = await host.run(
        "$ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name Containers",
        shell="powershell",
    )
    assert result.code == 0, result.stderr
    await host.reboot()
    assert host.machine.features["containers"] == "Enabled"


async def run_dropped(conn: asyncssh.SSHClientConnection, command: str) -> bool:
    """Run a command; True when the connection dropped without an exit status."""
    try:
        result = await conn.run(command, check=False)
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError):
        return True
    return result.exit_status is None and result.exit_signal is None


def flat(text: object) -> str:
    """An error record's text with the 120-column word wrap undone (wraps replace a space)."""
    return str(text).replace("\r\n", " ")
