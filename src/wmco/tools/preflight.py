r"""``wmco preflight``: check a Windows host before it joins, without changing anything on it.

Every question is one read-only query of :mod:`wmco.windows.commands` ("Read-only queries"),
parsed by :mod:`wmco.windows.preflightanswers`; nothing is written, installed, started or
stopped (the tests replay the host's command log and compare its disk, registry and services
before and after). The answer is a table of checks, each ``PASS``, ``FAIL``, ``WARN`` or ``SKIP``
(could not be checked, e.g. no SSH session) with what was found and what to do. The exit code
is 0 only when every *required* check passed or only warned.

Thresholds, and why:

- **Free space on C:** below 15 % of the volume fails: it is the kubelet's hard-eviction
  threshold ``imagefs.available`` in the configuration this operator writes
  (:mod:`wmco.windows.kubelet`), so such a node would report ``DiskPressure`` and evict pods
  from the start.
- **Clock skew** against the API server: above 300 s fails (the Kubernetes CSR signer backdates
  the certificates it issues by 5 minutes to absorb skew, and 5 minutes is also Windows' default
  Kerberos clock tolerance); above 60 s warns (w32time keeps a synchronised host within seconds).
  The API server's time is its ``Date`` header (1 s resolution), so skews below ~2 s are noise.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
import time
from collections.abc import Awaitable, Callable
from typing import Final

import asyncssh

from wmco import kube
from wmco.tools import hostaccess
from wmco.windows import (
    answers,
    commands,
    configfiles,
    preflightanswers,
    quoting,
    ssh,
    sshfailures,
    toolcommands,
)

MIN_FREE_FRACTION: Final = 0.15
"""The kubelet's ``evictionHard`` ``imagefs.available`` in this operator's kubelet configuration."""

MAX_CLOCK_SKEW: Final = 300.0
WARN_CLOCK_SKEW: Final = 60.0
REQUIRED_PORTS: Final = (10250, 9182)
"""Kubelet API (logs, exec) and windows_exporter metrics: the reference's BYOH prerequisites."""

_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_ACL_FIX: Final = (
    f"icacls.exe '{toolcommands.ADMIN_AUTHORIZED_KEYS}' /inheritance:r /grant 'Administrators:F' "
    "/grant 'SYSTEM:F'"
)


class Status(enum.StrEnum):
    """The outcome of one check."""

    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"
    SKIP = "SKIP"


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One line of the preflight table.

    Attributes:
        check: What was checked.
        status: The outcome.
        detail: What was found.
        hint: What to do about it (empty when nothing).
        required: Whether the host can join without it passing.
    """

    check: str
    status: Status
    detail: str
    hint: str = ""
    required: bool = True

    @property
    def blocks(self) -> bool:
        """The row keeps the exit code non-zero: a required check that did not pass or warn."""
        return self.required and self.status not in (Status.PASS, Status.WARN)


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """The host to check and how.

    Attributes:
        address: IP address or DNS name.
        username: SSH user (an Administrator).
        port: sshd port.
        key: The private key the operator will use.
        api_server_host: Host name (or IP) of the API server the kubelet will use, if known.
        connect_timeout: Seconds to keep trying the SSH connection.
    """

    address: str
    username: str
    port: int
    key: asyncssh.SSHKey = dataclasses.field(repr=False)
    api_server_host: str | None = None
    connect_timeout: float = hostaccess.DEFAULT_CONNECT_TIMEOUT


ServerClockReader = Callable[[], Awaitable[kube.ServerClock]]

CHECKS: Final = (
    "SSH login",
    "default shell",
    "authorized keys ACL",
    "Windows build",
    "Containers feature",
    "Hyper-V feature",
    "free space on C:",
    "clock skew",
    "firewall: TCP 10250",
    "firewall: TCP 9182",
    "host name",
    "DNS: API server name",
    "DNS: reverse lookup",
)
"""Every check, in table order."""


_OPTIONAL: Final = frozenset({"Hyper-V feature", "DNS: reverse lookup"})


def _skipped(names: tuple[str, ...], why: str) -> list[Row]:
    return [Row(name, Status.SKIP, why, required=name not in _OPTIONAL) for name in names]


async def run(target: Target, server_clock: ServerClockReader | None = None) -> list[Row]:
    """Run every check against the host.

    Args:
        target: The host.
        server_clock: Reads the API server's clock (``None``: no kubeconfig; skew not checked).

    Returns:
        One row per entry of :data:`CHECKS`.
    """
    host = ssh.WindowsHost(
        target.address,
        target.username,
        target.key,
        settings=hostaccess.tool_settings(target.port, target.connect_timeout),
    )
    try:
        seen = await host.connect()
    except sshfailures.AuthenticationError:
        return [
            Row("SSH login", Status.FAIL,
                f"{target.address}:{target.port} refused the key for user {target.username!r}",
                "add the public key to " + toolcommands.ADMIN_AUTHORIZED_KEYS + " (ASCII/UTF-8) and "
                "give only Administrators and SYSTEM access (sshd ignores it otherwise): "
                + _ACL_FIX),
            *_skipped(CHECKS[1:], "not checked: no SSH session"),
        ]  # fmt: skip
    except sshfailures.UnreachableError as exc:
        return [
            Row("SSH login", Status.FAIL, str(exc),
                f"install and start OpenSSH Server (sshd) and allow TCP {target.port} inbound"),
            *_skipped(CHECKS[1:], "not checked: no SSH session"),
        ]  # fmt: skip
    try:
        rows = [
            Row("SSH login", Status.PASS,
                f"{target.username}@{target.address}:{target.port}, host key {seen.key_type} "
                f"{seen.fingerprint}"),
        ]  # fmt: skip
        rows.extend(await _checks(host, target, server_clock))
        return rows
    finally:
        await host.close()


async def _checks(
    host: ssh.WindowsHost, target: Target, server_clock: ServerClockReader | None
) -> list[Row]:
    shell = await _default_shell(host)
    rows = [shell]
    name_row, host_name = await _host_name(host)
    if shell.status is not Status.PASS:
        # hostname is the one query cmd.exe answers the same way.
        rest = (*CHECKS[2:10], *CHECKS[11:])
        rows.extend(_skipped(rest, "not checked: commands need PowerShell as the default shell"))
        rows.insert(CHECKS.index("host name") - 1, name_row)
        return rows
    rows.append(await _acl(host))
    rows.append(await _build(host))
    rows.extend(await _features(host))
    rows.append(await _free_space(host))
    rows.append(await _clock(host, server_clock))
    rows.extend(await _ports(host))
    rows.append(name_row)
    rows.append(await _api_dns(host, target.api_server_host))
    rows.append(await _reverse_dns(host, target.address, host_name))
    return rows


async def _run(host: ssh.WindowsHost, command: str, what: str) -> ssh.Result:
    return await host.run(command, what=what, timeout=60)


async def _acl(host: ssh.WindowsHost) -> Row:
    name = "authorized keys ACL"
    result = await _run(host, toolcommands.file_acl(toolcommands.ADMIN_AUTHORIZED_KEYS), "icacls")
    if result.exit_status != 0:
        return Row(name, Status.FAIL, f"icacls exited {result.exit_status}", _ACL_FIX)
    try:
        entries = preflightanswers.parse_icacls(result.stdout, toolcommands.ADMIN_AUTHORIZED_KEYS)
    except answers.CommandOutputError as exc:
        return Row(name, Status.FAIL, str(exc), _ACL_FIX)
    problems = preflightanswers.key_file_acl_problems(entries)
    shown = ", ".join(f"{e.principal}:{''.join(f'({f})' for f in e.flags)}" for e in entries)
    if problems:
        return Row(name, Status.FAIL, "; ".join(problems), _ACL_FIX)
    return Row(name, Status.PASS, shown)


async def _default_shell(host: ssh.WindowsHost) -> Row:
    name = "default shell"
    hint = (
        "New-ItemProperty -Path 'HKLM:\\SOFTWARE\\OpenSSH' -Name DefaultShell -Value "
        "'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe' -PropertyType String "
        "-Force"
    )
    result = await _run(host, toolcommands.default_shell(), "default shell query")
    try:
        shell = preflightanswers.parse_default_shell(
            result.exit_status, result.stdout, result.stderr
        )
    except answers.CommandOutputError as exc:
        return Row(name, Status.FAIL, str(exc), hint)
    if not shell.powershell:
        found = shell.value or "unset (cmd.exe)"
        return Row(name, Status.FAIL, f"HKLM:\\SOFTWARE\\OpenSSH DefaultShell is {found}", hint)
    return Row(name, Status.PASS, shell.value)


async def _build(host: ssh.WindowsHost) -> Row:
    name = "Windows build"
    supported = ", ".join(str(b) for b in sorted(configfiles.SUPPORTED_BUILDS))
    result = await _run(host, commands.os_build(), "OS build query")
    try:
        build = answers.parse_os_build(result.stdout)
    except answers.CommandOutputError as exc:
        return Row(name, Status.FAIL, str(exc), f"use Windows Server build {supported}")
    if build not in configfiles.SUPPORTED_BUILDS:
        return Row(
            name, Status.FAIL, f"build {build} is not supported",
            f"use Windows Server 2019 (17763), 2022 (20348) or 2025 (26100): {supported}",
        )  # fmt: skip
    return Row(name, Status.PASS, f"build {build}")


async def _feature_state(host: ssh.WindowsHost, feature: str) -> answers.InstallState | None:
    result = await _run(host, commands.windows_feature_state(feature), f"{feature} state")
    if result.exit_status != 0 or not result.stdout.strip():
        return None
    try:
        return answers.InstallState(result.stdout.strip())
    except ValueError:
        return None


async def _features(host: ssh.WindowsHost) -> list[Row]:
    states = answers.InstallState
    containers = await _feature_state(host, "Containers")
    if containers is states.INSTALLED:
        first = Row("Containers feature", Status.PASS, "Installed")
    elif containers in (states.AVAILABLE, states.INSTALL_PENDING):
        first = Row(
            "Containers feature", Status.WARN, str(containers),
            "nothing to do: the operator installs it with a reboot"
            + (" (a reboot is already pending)" if containers is states.INSTALL_PENDING else ""),
        )  # fmt: skip
    else:
        found = str(containers) if containers is not None else "not offered by this edition"
        first = Row(
            "Containers feature", Status.FAIL, found,
            "the operator cannot install it: restore the feature's payload (Install-WindowsFeature "
            "-Name Containers -Source <media>) or use a Windows Server image that has it",
        )  # fmt: skip
    hyperv = await _feature_state(host, "Hyper-V")
    if hyperv is states.INSTALLED:
        second = Row("Hyper-V feature", Status.PASS, "Installed", required=False)
    else:
        second = Row(
            "Hyper-V feature", Status.WARN, str(hyperv) if hyperv else "not offered",
            "only Hyper-V isolated pods need it; the operator installs it (with a reboot) when "
            "Hyper-V isolation is enabled, on hardware with virtualisation extensions",
            required=False,
        )  # fmt: skip
    return [first, second]


def _gib(count: int) -> str:
    return f"{count / 2**30:.1f} GiB"


async def _free_space(host: ssh.WindowsHost) -> Row:
    name = "free space on C:"
    hint = "free or add space on C: (images and container layers live there)"
    free_result = await _run(host, toolcommands.system_drive_free(), "free space query")
    used_result = await _run(host, toolcommands.system_drive_used(), "used space query")
    try:
        free = preflightanswers.parse_byte_count(free_result.stdout, "free space")
        used = preflightanswers.parse_byte_count(used_result.stdout, "used space")
    except answers.CommandOutputError as exc:
        return Row(name, Status.FAIL, str(exc), hint)
    size = free + used
    detail = f"{_gib(free)} free of {_gib(size)}"
    if size == 0 or free / size < MIN_FREE_FRACTION:
        return Row(
            name, Status.FAIL, detail + f" (below {MIN_FREE_FRACTION:.0%})",
            hint + f"; the kubelet evicts pods below {MIN_FREE_FRACTION:.0%} free (imagefs.available)",
        )  # fmt: skip
    return Row(name, Status.PASS, detail)


async def _clock(host: ssh.WindowsHost, server_clock: ServerClockReader | None) -> Row:
    name = "clock skew"
    if server_clock is None:
        return Row(name, Status.WARN, "not checked: needs --kubeconfig",
                   "run again with --kubeconfig to compare the host's clock with the API server's")  # fmt: skip
    hint = "synchronise the host's clock (w32tm /resync; check its time source)"
    try:
        server = await server_clock()
    except kube.KubeError as exc:
        return Row(name, Status.FAIL, f"cannot read the API server's clock: {exc}", hint)
    before = time.time()
    result = await _run(host, toolcommands.local_time(), "clock query")
    after = time.time()
    try:
        host_time = preflightanswers.parse_round_trip_time(result.stdout)
    except answers.CommandOutputError as exc:
        return Row(name, Status.FAIL, str(exc), hint)
    # Each clock's offset from ours, measured at the midpoint of its round trip. The Date header
    # is truncated to the second, hence the +0.5.
    server_offset = server.date.timestamp() + 0.5 - (server.sent + server.received) / 2
    host_offset = host_time.timestamp() - (before + after) / 2
    skew = host_offset - server_offset
    direction = "ahead of" if skew > 0 else "behind"
    detail = f"host clock {abs(skew):.1f}s {direction} the API server"
    if abs(skew) > MAX_CLOCK_SKEW:
        return Row(name, Status.FAIL, detail + f" (limit {MAX_CLOCK_SKEW:.0f}s)", hint)
    if abs(skew) > WARN_CLOCK_SKEW:
        return Row(name, Status.WARN, detail, hint)
    return Row(name, Status.PASS, detail)


async def _ports(host: ssh.WindowsHost) -> list[Row]:
    result = await _run(host, toolcommands.inbound_port_filters(), "firewall query")
    rows = []
    for port in REQUIRED_PORTS:
        name = f"firewall: TCP {port}"
        hint = (
            f"New-NetFirewallRule -DisplayName 'wmco-{port}' -Direction Inbound -Action Allow "
            f"-Protocol TCP -LocalPort {port}"
        )
        try:
            allowed = preflightanswers.port_allowed(result.stdout, port)
        except answers.CommandOutputError as exc:
            rows.append(Row(name, Status.FAIL, str(exc), hint))
            continue
        if allowed:
            rows.append(Row(name, Status.PASS, "an enabled inbound allow rule covers it"))
        else:
            rows.append(Row(name, Status.FAIL, "no enabled inbound allow rule covers it", hint))
    return rows


async def _host_name(host: ssh.WindowsHost) -> tuple[Row, str]:
    name = "host name"
    result = await _run(host, commands.hostname(), "hostname")
    try:
        shown = answers.parse_hostname(result.stdout)
    except answers.CommandOutputError as exc:
        return Row(name, Status.FAIL, str(exc)), ""
    node = shown.lower()
    if not _DNS_LABEL.fullmatch(node):
        return Row(
            name, Status.FAIL,
            f"{shown!r} -> node name {node!r} is not a DNS-1123 label (a-z, 0-9, '-', at most "
            "63, alphanumeric at both ends)",
            "Rename-Computer -NewName <valid-name> -Restart",
        ), node  # fmt: skip
    return Row(name, Status.PASS, f"{shown} (node name {node})"), node


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


async def _api_dns(host: ssh.WindowsHost, api_host: str | None) -> Row:
    name = "DNS: API server name"
    if api_host is None:
        return Row(name, Status.WARN, "not checked: needs --kubeconfig or --api-server-url",
                   "run again with --kubeconfig")  # fmt: skip
    if _is_ip(api_host):
        return Row(name, Status.PASS, f"{api_host} is an address; nothing to resolve")
    try:
        command = toolcommands.resolve_name(api_host)
    except quoting.UnsafeValueError as exc:
        return Row(name, Status.FAIL, f"not looked up: {exc}", "check --api-server-url")
    result = await _run(host, command, "API server name lookup")
    try:
        found = preflightanswers.parse_a_records(result.stdout)
    except answers.CommandOutputError as exc:
        found, error = [], str(exc)
    else:
        error = "DNS name does not exist" if not found else ""
    if not found:
        return Row(
            name, Status.FAIL, f"the host cannot resolve {api_host}: {error}",
            "point the host's DNS at a server that resolves the API server's name",
        )  # fmt: skip
    return Row(name, Status.PASS, f"{api_host} -> {', '.join(found)}")


async def _reverse_dns(host: ssh.WindowsHost, address: str, expected: str) -> Row:
    name = "DNS: reverse lookup"
    if not _is_ip(address) or ipaddress.ip_address(address).version != 4:
        return Row(name, Status.PASS, f"{address} is a name; no reverse lookup needed",
                   required=False)  # fmt: skip
    result = await _run(host, toolcommands.resolve_address(address), "reverse lookup")
    try:
        found = preflightanswers.parse_ptr_records(result.stdout)
    except answers.CommandOutputError:
        found = []
    hint = (
        f"add a PTR record for {address} naming the host: the reference operator's "
        "bring-your-own-host CSR approval needs it (this operator does not)"
    )
    if not found:
        return Row(name, Status.WARN, f"no PTR record for {address}", hint, required=False)
    if not any(expected and expected in entry.lower() for entry in found):
        return Row(
            name, Status.WARN, f"{address} -> {', '.join(found)}, not the host name {expected}",
            hint, required=False,
        )  # fmt: skip
    return Row(name, Status.PASS, f"{address} -> {', '.join(found)}", required=False)


def exit_code(rows: list[Row]) -> int:
    """0 when every required check passed or warned, else 1."""
    return 1 if any(row.blocks for row in rows) else 0


def render(rows: list[Row]) -> str:
    """The table: CHECK, STATUS, DETAIL, WHAT TO DO; one row per line, columns padded."""
    header = ("CHECK", "STATUS", "DETAIL", "WHAT TO DO")
    table = [header] + [
        (r.check + ("" if r.required else " (optional)"), str(r.status), r.detail, r.hint or "-")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:3])) + "  " + line[3]
        for line in table
    ]
    verdict = "host is ready to join" if exit_code(rows) == 0 else "host is NOT ready to join"
    return "\n".join(lines) + f"\n\n{verdict}\n"
