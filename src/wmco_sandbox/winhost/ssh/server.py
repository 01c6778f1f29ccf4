"""The SSH face of a host: an asyncssh server behaving like Win32-OpenSSH.

Public-key authentication only, against ``administrators_authorized_keys`` (honoured only with
the restricted ACL, read as UTF-8/ASCII, a UTF-16 file is ignored, as sshd does). Exec requests
run in the default shell chosen from the registry; the exit status is the full 32-bit value.
When a command reboots the host, or changes HNS so that connectivity blips, no exit status is
sent: the connection just drops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import cast

import asyncssh
from asyncssh.constants import OPEN_ADMINISTRATIVELY_PROHIBITED
from asyncssh.packet import UInt32

from wmco_sandbox.winhost.core.faults import CommandRecord
from wmco_sandbox.winhost.powershell.session import PowerShellSession, ShellResult
from wmco_sandbox.winhost.shells.cmd import run_cmd
from wmco_sandbox.winhost.ssh.endpoint import SshEndpoint
from wmco_sandbox.winhost.ssh.sftp import WinSFTPServer

__all__ = ["WinSSHServer", "authorized_blobs", "handle_process", "send_exit_status"]

ADMIN_KEYS = "C:\\ProgramData\\ssh\\administrators_authorized_keys"


def authorized_blobs(data: bytes) -> set[bytes]:
    """Public key blobs of an authorized_keys file, parsed the way sshd does."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:64]:
        return set()  # UTF-16: sshd only reads UTF-8
    blobs: set[bytes] = set()
    for line in data.decode("utf-8", "replace").splitlines():
        tokens = line.strip().split()
        for i, token in enumerate(tokens[:-1]):
            if token.startswith(("ssh-", "ecdsa-sha2-", "sk-")):
                with contextlib.suppress(ValueError):
                    blobs.add(base64.b64decode(tokens[i + 1], validate=True))
                break
    return blobs


class WinSSHServer(asyncssh.SSHServer):
    """Per-connection server object: authentication decisions and connection tracking."""

    def __init__(self, host: SshEndpoint) -> None:
        self._host = host
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:  # noqa: D102
        self._conn = conn
        self._host.connections.add(conn)
        if not self._host.machine.firewall_allows(22):
            conn.abort()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        if self._conn is not None:
            self._host.connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:  # noqa: D102
        return True

    def password_auth_supported(self) -> bool:  # noqa: D102
        return False

    def public_key_auth_supported(self) -> bool:  # noqa: D102
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:  # noqa: D102
        return self._host.key_allowed(username, key.public_data)

    def session_requested(self) -> asyncssh.SSHServerProcess[bytes]:
        """Open a session channel, enforcing sshd's ``MaxSessions`` (10) per connection."""
        host = self._host
        assert self._conn is not None
        channels = self._conn._channels.values()  # asyncssh keeps no public count
        if sum(isinstance(c, asyncssh.SSHServerChannel) for c in channels) >= host.max_sessions:
            raise asyncssh.ChannelOpenError(OPEN_ADMINISTRATIVELY_PROHIBITED, "open failed")
        return asyncssh.SSHServerProcess(
            lambda proc: handle_process(host, proc),
            lambda chan: WinSFTPServer(cast(asyncssh.SSHServerChannel[bytes], chan), host),
            3,
            False,
        )


def send_exit_status(process: asyncssh.SSHServerProcess[bytes], status: int) -> None:
    """Send the FULL 32-bit exit status and close the channel.

    asyncssh's ``exit()`` masks the status to 8 bits; Win32-OpenSSH sends the whole
    ``GetExitCodeProcess`` value (1060, 3221225477...), so the request is sent directly.
    """
    chan = process.channel
    if chan._send_state not in {"close_pending", "closed"}:
        chan._send_request(b"exit-status", UInt32(status & 0xFFFFFFFF))
        chan.close()


async def handle_process(host: SshEndpoint, process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Run one exec request in the host's default shell."""
    user = process.get_extra_info("username") or ""
    command = process.command
    machine = host.machine
    if command is None:
        process.stderr.write(b"Interactive shells are not simulated.\r\n")
        process.exit(1)
        return
    host.traffic.execs += 1
    shell = machine.default_shell()
    # Each exec starts a new DefaultShell process on Windows, after a network round trip.
    cost = host.faults.command_latency + machine.profile.exec_cost(shell)
    if cost:
        await asyncio.sleep(cost)
    blips = machine.hns.blips
    result: ShellResult
    if shell == "powershell":
        result = await PowerShellSession(machine, user=user).run(command)
    elif shell == "cmd":
        native = await run_cmd(machine, command)
        result = ShellResult(native.code, native.stdout, native.stderr)
    else:
        result = ShellResult(1, "", "The configured DefaultShell is not simulated.\r\n")
    rebooting = machine.reboot_requested
    code = None if rebooting else result.code
    if machine.hns.blips != blips:
        # The command rebound the virtual switch: the connection is gone, no exit status.
        host.command_log.append(
            CommandRecord(user, shell, command, None, result.stdout, result.stderr)
        )
        return
    host.command_log.append(CommandRecord(user, shell, command, code, result.stdout, result.stderr))
    if rebooting:
        host.request_reboot()
        return
    try:
        process.stdout.write(result.stdout.encode("cp437", "replace"))
        process.stderr.write(result.stderr.encode("cp437", "replace"))
        send_exit_status(process, code if code is not None else 1)
    except (BrokenPipeError, ConnectionError, asyncssh.Error):
        pass
