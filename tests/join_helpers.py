"""Helpers for scripts that set a simulated host up over SSH alone, as a person would.

No operator code: literal PowerShell and sc.exe text, SFTP, and the API server as admin (standing
in for the cluster's approvers and network plugins).
"""

from __future__ import annotations

import contextlib

import asyncssh
from lightkube import AsyncClient
from lightkube.models.certificates_v1 import (
    CertificateSigningRequestCondition,
    CertificateSigningRequestStatus,
)
from lightkube.resources.certificates_v1 import (
    CertificateSigningRequest,
    CertificateSigningRequestApproval,
)

from wmco_sandbox.winhost.host import WindowsHost

ADMIN_KEYS = "C:\\ProgramData\\ssh\\administrators_authorized_keys"


def user_data(public_key: str) -> str:
    """User data that installs OpenSSH, makes PowerShell the shell and authorises one key."""
    return (
        "<powershell>\n"
        "Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0'\n"
        "New-ItemProperty -Path 'HKLM:\\SOFTWARE\\OpenSSH' -Name 'DefaultShell' -Value "
        "'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe' -PropertyType String -Force\n"
        "New-NetFirewallRule -DisplayName 'ContainerLogsPort' -Direction Inbound -Action Allow "
        "-Protocol TCP -LocalPort 10250 -EdgeTraversalPolicy Allow\n"
        "Set-Service -Name 'sshd' -StartupType 'Automatic'\n"
        "Start-Service -Name 'sshd'\n"
        f"Set-Content -LiteralPath '{ADMIN_KEYS}' -Value '{public_key}' -Encoding ascii\n"
        f"icacls.exe '{ADMIN_KEYS}' /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'\n"
        "Restart-Service -Name 'sshd'\n"
        "</powershell>\n<persist>true</persist>\n"
    )


class Shell:
    """SSH to the host, reconnecting after drops (reboots, HNS connectivity blips)."""

    def __init__(self, host: WindowsHost, key: asyncssh.SSHKey) -> None:
        self.host, self.key = host, key
        self.conn: asyncssh.SSHClientConnection | None = None

    async def connect(self) -> asyncssh.SSHClientConnection:
        """The open connection, dialled again if it was dropped."""
        if self.conn is None:
            self.conn = await asyncssh.connect(
                self.host.address, self.host.port, username="Administrator",
                client_keys=[self.key], known_hosts=([self.host.host_public_key], [], []),
                agent_path=None, config=None, connect_timeout=5,
            )  # fmt: skip
        return self.conn

    async def run(self, command: str) -> str:
        """Run a command that must succeed; return its stdout."""
        conn = await self.connect()
        result = await conn.run(command, check=False)
        assert result.exit_status == 0, f"{command!r}: {result.stdout!r} {result.stderr!r}"
        return str(result.stdout)

    async def run_dropping(self, command: str) -> None:
        """A command after which the connection drops (no exit status)."""
        conn = await self.connect()
        with contextlib.suppress(asyncssh.ConnectionLost, asyncssh.DisconnectError):
            await conn.run(command, check=False)
        self.drop()

    async def put(self, files: dict[str, bytes]) -> None:
        """Write files over SFTP (``/C:/...`` paths)."""
        conn = await self.connect()
        async with conn.start_sftp_client() as sftp:
            for path, data in files.items():
                async with sftp.open(path, "wb") as handle:
                    await handle.write(data)

    def drop(self) -> None:
        """Forget the connection (the host dropped it)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


async def approve_pending(kube: AsyncClient) -> int:
    """Approve, as admin, every CSR nobody decided yet; return how many."""
    approved = 0
    async for csr in kube.list(CertificateSigningRequest):
        if (csr.status and csr.status.conditions) or csr.metadata is None:
            continue
        csr.status = CertificateSigningRequestStatus(
            conditions=[CertificateSigningRequestCondition(
                type="Approved", status="True", reason="TestScript", message="approved",
            )]
        )  # fmt: skip
        await kube.replace(
            CertificateSigningRequestApproval.from_dict(csr.to_dict()), str(csr.metadata.name)
        )
        approved += 1
    return approved
