"""The read-only queries of ``wmco preflight`` and the host-log tools (issue 11, tools).

None of these changes the host (docs/windows-surface.md "Preflight and host logs"). They are built
like every other form (:mod:`wmco.windows.commands`): every value quoted by
:mod:`wmco.windows.quoting`, a value that cannot be quoted safely refused before anything is sent.
"""

from __future__ import annotations

import re
from typing import Final

from wmco.windows import quoting
from wmco.windows.commands import (
    check_name,
    check_windows_path,
    path_literal,
    service_arg,
    with_exit_code,
)

OPENSSH_REGISTRY_KEY: Final = "HKLM:\\SOFTWARE\\OpenSSH"
ADMIN_AUTHORIZED_KEYS: Final = "C:\\ProgramData\\ssh\\administrators_authorized_keys"
_DNS_NAME: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_.]{0,252})")
_IPV4: Final = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}")


def default_shell() -> str:
    r"""Answer sshd's ``DefaultShell`` (``HKLM:\SOFTWARE\OpenSSH``); nothing when it is unset.

    Sent to a host whose shell is unknown: cmd.exe answers ``'(Get-ItemProperty' is not
    recognized as an internal or external command`` (see ``preflightanswers.parse_default_shell``).
    """
    return f"(Get-ItemProperty -Path {quoting.ps_quote(OPENSSH_REGISTRY_KEY)}).DefaultShell"


def file_acl(path: str) -> str:
    """``icacls.exe <path>``: the file's access control entries (read only: no option)."""
    return with_exit_code(f"icacls.exe {quoting.native_arg(check_windows_path(path), what='path')}")


def system_drive_free() -> str:
    """Answer the free bytes of C: (``Get-PSDrive``)."""
    return "(Get-PSDrive -Name 'C').Free"


def system_drive_used() -> str:
    """Answer the used bytes of C: (``Get-PSDrive``)."""
    return "(Get-PSDrive -Name 'C').Used"


def local_time() -> str:
    """Answer the host's clock in .NET's round-trip format with its UTC offset."""
    return "Get-Date -Format 'o'"


def inbound_port_filters() -> str:
    """The port filters of every enabled inbound allow rule, as one JSON array."""
    return (
        "ConvertTo-Json -InputObject @(Get-NetFirewallRule -Direction Inbound -Enabled True "
        "-Action Allow | Get-NetFirewallPortFilter) -Compress"
    )


def check_dns_name(name: str) -> str:
    """Refuse anything but a DNS name or IPv4 address (letters, digits, ``- _ .``).

    Raises:
        quoting.UnsafeValueError: The name has other characters.
    """
    return check_name(name, _DNS_NAME, what="DNS name", allowed="A-Z a-z 0-9 - _ .")


def resolve_name(name: str) -> str:
    """The host resolver's A records for ``name`` as one JSON array (``[]`` + error if none)."""
    return (
        f"ConvertTo-Json -InputObject @(Resolve-DnsName -Name "
        f"{quoting.ps_quote(check_dns_name(name))} -Type A) -Compress"
    )


def resolve_address(address: str) -> str:
    """The host resolver's PTR records for an IPv4 address as one JSON array."""
    if not _IPV4.fullmatch(check_dns_name(address)):
        raise quoting.UnsafeValueError("IPv4 address", "something other than an IPv4 address")
    return (
        f"ConvertTo-Json -InputObject @(Resolve-DnsName -Name {quoting.ps_quote(address)} "
        "-Type PTR) -Compress"
    )


def read_text_tail(path: str, lines: int) -> str:
    """The last ``lines`` lines of a text file; ``lines=0`` means the whole file.

    A missing file is ``Get-Content``'s ``Cannot find path`` error (exit 1).
    """
    if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
        raise quoting.UnsafeValueError("line count", "something other than a count")
    tail = f" -Tail {lines}" if lines else ""
    return f"Get-Content -LiteralPath {path_literal(path)}{tail}"


def service_state_extended(name: str) -> str:
    """``sc.exe queryex``: the status block with ``PID`` and ``FLAGS``, or exit 1060."""
    return with_exit_code(f"sc.exe queryex {service_arg(name)}")
