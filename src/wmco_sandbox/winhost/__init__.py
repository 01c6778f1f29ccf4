"""A simulated Windows Server host: OpenSSH, PowerShell 5.1, cmd, SCM and disk.

It is the one test double of the project; it never imports the ``wmco`` package and parses what
arrives on the wire by itself. Entry points: :class:`WindowsHost` (one host), and
:class:`WindowsHostFleet` (many). The command surface it implements is documented in
``docs/windows-surface.md``.
"""

from wmco_sandbox.winhost.core.faults import CommandRecord, Faults
from wmco_sandbox.winhost.core.processes import (
    HostFacts,
    KubeletConfigError,
    KubeletEnvironment,
    KubeletFactory,
    KubeletProcess,
)
from wmco_sandbox.winhost.fleet import WindowsHostFleet
from wmco_sandbox.winhost.host import WindowsHost, allocate_address
from wmco_sandbox.winhost.powershell.session import ShellResult

__all__ = [
    "CommandRecord",
    "Faults",
    "HostFacts",
    "KubeletConfigError",
    "KubeletEnvironment",
    "KubeletFactory",
    "KubeletProcess",
    "ShellResult",
    "WindowsHost",
    "WindowsHostFleet",
    "allocate_address",
]
