"""How long things take on a simulated host: named timing profiles.

Tests want hosts that answer at once (``fast``); a benchmark that compares operators must make
every round trip cost what it costs on a real cloud VM (``realistic``), or batching commands and
compressing the payload would look free. The profile is the host's clock for the slow parts:

* every exec starts a new shell process (Win32-OpenSSH runs each exec request in a fresh
  ``DefaultShell``), and Windows PowerShell 5.1 is slow to start;
* every request pays the network round trip;
* SFTP is bound by the lower of the SSH stream and the disk;
* services, the Containers feature and reboots take their time;
* the kubelet's TLS bootstrap and registration take their time.

A profile is applied to a host with :meth:`WindowsHost.apply_profile` (``host.py``); the sandbox
(``--host-profile``) and ``benchmarks/`` choose one by name with :func:`named`.
"""

from __future__ import annotations

import dataclasses
from typing import Final


@dataclasses.dataclass(frozen=True, slots=True)
class HostProfile:
    """Seconds (and bytes per second) the slow parts of a host take.

    Attributes:
        name: The profile's name.
        powershell_start: Start of a ``powershell.exe`` for one exec (DefaultShell PowerShell).
        cmd_start: Start of a ``cmd.exe`` for one exec (DefaultShell cmd).
        round_trip: Network round trip added to every exec and every SFTP session open.
        sftp_bandwidth: SFTP throughput of one session, bytes per second (0: unlimited).
        disk_write: Disk write throughput, bytes per second (0: unlimited).
        service_start: A service's start, from ``sc.exe start`` to Running.
        feature_install: ``Install-WindowsFeature`` of the Containers or Hyper-V feature.
        reboot: From ``Restart-Computer`` until sshd accepts connections again.
        kubelet_bootstrap: The kubelet's start until it sends its client CSR (certificate
            manager, key generation).
        kubelet_registration: From its client certificate to the Node registered.
    """

    name: str
    powershell_start: float = 0.0
    cmd_start: float = 0.0
    round_trip: float = 0.0
    sftp_bandwidth: int = 0
    disk_write: int = 0
    service_start: float = 0.0
    feature_install: float = 0.0
    reboot: float = 0.2
    kubelet_bootstrap: float = 0.0
    kubelet_registration: float = 0.0

    def exec_cost(self, shell: str) -> float:
        """Seconds an exec request costs before the command runs in ``shell``."""
        start = self.powershell_start if shell == "powershell" else self.cmd_start
        return self.round_trip + start

    @property
    def transfer_rate(self) -> int:
        """Bytes per second one SFTP upload reaches (the lower of the stream and the disk)."""
        rates = [rate for rate in (self.sftp_bandwidth, self.disk_write) if rate > 0]
        return min(rates) if rates else 0


FAST: Final = HostProfile(name="fast")
"""Everything at once: the profile of the tests (reboots keep their short default gap)."""

_MB: Final = 1_000_000

REALISTIC: Final = HostProfile(
    name="realistic",
    # Windows PowerShell 5.1 cold start: 333 ms mean (PowerShell/PowerShell PR #8341,
    # "PSStartupTime.WinPS" BenchmarkDotNet run); 190-200 ms on a fast Server 2019 box
    # (PowerShell/PowerShell#12843). Issue 12 quotes Microsoft's WMF 5.1 figure, ~250 ms.
    powershell_start=0.25,
    # cmd.exe /c: one CreateProcess, tens of milliseconds on Windows with an anti-malware scan
    # (bitsnbites.eu "Benchmarking OS primitives", process launch; cited in ARMmbed/mbed-cli#563).
    cmd_start=0.03,
    # VM to VM in one cloud region / availability zone: about a millisecond (Azure's
    # "network round-trip latency statistics" page lists intra-region figures of 1-2 ms).
    round_trip=0.002,
    # One SFTP stream is bound by OpenSSH's fixed flow-control window and cipher, not the NIC:
    # tens of MB/s on a cloud LAN (the HPN-SSH project's measurements of stock OpenSSH).
    sftp_bandwidth=60 * _MB,
    # AWS EBS gp3 baseline throughput: 125 MiB/s (Amazon EBS volume types documentation).
    disk_write=131 * _MB,
    # Assumption: a Go service binary is Running about a second after sc.exe start (the SCM's
    # own limit is 30 s, ServicesPipeTimeout, Microsoft docs "Service Control Manager").
    service_start=1.0,
    # Assumption: Install-WindowsFeature Containers takes about a minute on a cloud VM, and a
    # Server 2022 VM reboots and answers SSH again in about 90 s; the reference operator's
    # README puts the whole join at "around 10 minutes" (shared/reference/peers-and-users.md).
    feature_install=60.0,
    reboot=90.0,
    # Assumption: the kubelet generates its key and sends the CSR within a second, and registers
    # its Node a second or two after the certificate is issued (kubelet start-up logs).
    kubelet_bootstrap=1.0,
    kubelet_registration=2.0,
)

PROFILES: Final = {profile.name: profile for profile in (FAST, REALISTIC)}


def named(name: str) -> HostProfile:
    """The profile called ``name``.

    Raises:
        ValueError: No profile has that name.
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown host profile {name!r}; choose one of {', '.join(PROFILES)}"
        ) from None
