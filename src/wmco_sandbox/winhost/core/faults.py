"""Faults a test can switch on at run time, and the host's command log.

A fault is a plain field of :class:`Faults`; the host reads them live, so a test changes
``host.faults.disk_full = True`` in the middle of a scenario and the next write fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CommandRecord", "Faults"]


@dataclass
class Faults:
    """Faults injected into one host (all off by default).

    Attributes:
        command_latency: Seconds added before every exec command runs.
        sftp_bandwidth: SFTP write/read cap in bytes per second (None = unlimited).
        drop_after_bytes: Abort a connection once it has carried this many SFTP data bytes.
        refuse_auth: Refuse every public key (as if the key file were unreadable).
        disk_full: Every write that needs space fails with "disk full".
        failing_services: Services whose start fails (1053, the service did not respond).
        never_return_from_reboot: After ``Restart-Computer`` the host stays down.
        reboot_unreachable: Seconds the host refuses connections during a reboot.
    """

    command_latency: float = 0.0
    sftp_bandwidth: int | None = None
    drop_after_bytes: int | None = None
    refuse_auth: bool = False
    disk_full: bool = False
    failing_services: set[str] = field(default_factory=set)
    never_return_from_reboot: bool = False
    reboot_unreachable: float = 0.2


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One exec request the host received.

    Attributes:
        user: The authenticated user.
        shell: ``powershell`` or ``cmd`` (the default shell that ran it).
        command: The exact command text.
        exit_status: The exit status sent, or None when the connection dropped first.
        stdout: What was written to stdout.
        stderr: What was written to stderr.
    """

    user: str
    shell: str
    command: str
    exit_status: int | None
    stdout: str = ""
    stderr: str = ""
