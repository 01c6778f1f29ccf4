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
