"""What the SSH layer needs from the host it serves, as a protocol.

The SSH server and the SFTP subsystem sit above the shells and the machine but below the host's
life cycle (``winhost.host``), which builds them. They see the host only through
:class:`SshEndpoint`, so nothing in ``ssh/`` imports ``host`` and the host can import ``ssh``.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import asyncssh

from wmco_sandbox.winhost.core.faults import CommandRecord, Faults
from wmco_sandbox.winhost.core.machine import Machine

__all__ = ["SshEndpoint", "Traffic"]


@dataclasses.dataclass(slots=True)
class Traffic:
    """What one host's sshd served: the figures a benchmark reports per host.

    Attributes:
        execs: Exec requests (each one a new shell process on Windows).
        sftp_sessions: SFTP subsystem sessions opened.
        sftp_bytes_written: Bytes received through SFTP writes.
    """

    execs: int = 0
    sftp_sessions: int = 0
    sftp_bytes_written: int = 0


class SshEndpoint(Protocol):
    """The host as its sshd sees it."""

    machine: Machine
    command_log: list[CommandRecord]
    connections: set[asyncssh.SSHServerConnection]
    max_sessions: int
    traffic: Traffic

    @property
    def faults(self) -> Faults:
        """Live faults (refused authentication, latency, dropped transfers...)."""
        ...

    def key_allowed(self, username: str, blob: bytes) -> bool:
        """Sshd's decision for a public key."""
        ...

    def count_bytes(self, conn: object, count: int) -> bool:
        """Account SFTP bytes on a connection; True when the drop fault triggers."""
        ...

    def request_reboot(self) -> None:
        """Start a reboot in the background (a command asked for one)."""
        ...
