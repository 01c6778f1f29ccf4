"""THE builder of every command the operator sends to a Windows host, and the answer parsers.

Each function returns the exact command string of one form of ``docs/windows-surface.md``; the
simulated host parses exactly these forms, so a change here is a change of the contract. Every value
is quoted by :mod:`wmco.windows.quoting`; a value that cannot be quoted safely raises
``quoting.UnsafeValueError`` and nothing is sent.

Native programs (sc.exe, tar) end with ``; exit $LASTEXITCODE``: PowerShell would otherwise squash
their Win32 exit codes (1060, 1073, ...) to 0/1.

Parsers take the decoded stdout (CRLF already turned into LF by the SSH layer, but they tolerate CR)
and return typed records; they match on codes and field labels, never on localised messages.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from collections.abc import Sequence
from typing import Final

from wmco.windows import quoting

# --- Validation of names and paths ------------------------------------------------------------

_SERVICE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}")
_PROCESS_NAME: Final = _SERVICE_NAME
_WINDOWS_PATH: Final = re.compile(r"[A-Za-z]:\\")
_NO_DEPENDENCIES: Final = "/"


class CommandOutputError(ValueError):
    """A command's output does not have the shape the contract promises.

    Attributes:
        command_kind: Which answer was being parsed, e.g. ``file hash``.
    """

    def __init__(self, command_kind: str, detail: str, output: str) -> None:
        excerpt = output.strip().replace("\n", " | ")
        if len(excerpt) > 200:
            excerpt = excerpt[:200] + "..."
        super().__init__(f"unexpected {command_kind} output ({detail}): {excerpt!r}")
        self.command_kind = command_kind


def check_service_name(name: str) -> str:
    """Refuse anything but a plain service name (letters, digits, ``_ . -``; at most 80 chars).

    Raises:
        quoting.UnsafeValueError: The name has other characters.
    """
    quoting.check_literal(name, what="service name")
    if not _SERVICE_NAME.fullmatch(name):
        raise quoting.UnsafeValueError("service name", "characters other than A-Z a-z 0-9 _ . -")
    return name


def check_windows_path(path: str, *, what: str = "path") -> str:
    r"""Refuse a path that is not absolute with a drive letter (``C:\...``).

    Relative paths would resolve against the SSH user's profile, never what is meant.

    Raises:
        quoting.UnsafeValueError: The path is relative or unsafe to quote.
    """
    quoting.check_literal(path, what=what)
    if not _WINDOWS_PATH.match(path):
        raise quoting.UnsafeValueError(what, "no drive prefix like C:\\ (only absolute paths)")
    return path


def _path(path: str, what: str = "path") -> str:
    return quoting.ps_quote(check_windows_path(path, what=what), what=what)


def _native_path(path: str, what: str = "path") -> str:
    return quoting.native_arg(check_windows_path(path, what=what), what=what)


def _service(name: str) -> str:
    return quoting.native_arg(check_service_name(name), what="service name")


def _exit_code(statement: str) -> str:
    return quoting.join_statements(statement, "exit $LASTEXITCODE")


# --- Command forms ----------------------------------------------------------------------------


def liveness() -> str:
    """``Get-Help``: succeeds (exit 0) only when the default shell is PowerShell."""
    return "Get-Help"


def make_directory(path: str) -> str:
    """Create a directory and its parents; no error if it exists."""
    return f"New-Item -ItemType Directory -Force -Path {_path(path)} | Out-Null"


def test_path(path: str) -> str:
    """Answer ``True`` or ``False`` (see :func:`parse_bool`)."""
    return f"Test-Path -LiteralPath {_path(path)}"


def file_hash(path: str) -> str:
    """Answer the upper-case SHA-256 hex of a file (see :func:`parse_file_hash`)."""
    return f"(Get-FileHash -LiteralPath {_path(path)} -Algorithm SHA256).Hash"


def remove_path(path: str) -> str:
    """Remove a file or a directory tree if it exists; silent either way."""
    quoted = _path(path)
    return (
        f"if (Test-Path -LiteralPath {quoted}) "
        f"{{ Remove-Item -LiteralPath {quoted} -Recurse -Force }}"
    )


def unpack(archive: str, directory: str) -> str:
    """Extract a ``.tar.gz`` into an existing directory with the in-box bsdtar."""
    return _exit_code(
        f"tar -xzf {_native_path(archive, 'archive')} -C {_native_path(directory, 'directory')}"
    )


def write_small_file(path: str, text: str) -> str:
    """Write a one-line ASCII file (no newline added).

    Only for short single-line content (JSON written compactly is fine); multi-line content such as
    PEM bundles goes over SFTP. The text is never echoed in errors, it may hold a token.
    """
    value = quoting.ps_quote(text, what="file content")
    return f"Set-Content -LiteralPath {_path(path)} -Value {value} -Encoding ascii -NoNewline"


def service_exists(name: str) -> str:
    """``sc.exe qc``: a ``QueryServiceConfig SUCCESS`` block or exit 1060 (:func:`parse_sc_qc`)."""
    return _exit_code(f"sc.exe qc {_service(name)}")


def service_state(name: str) -> str:
    """``sc.exe query``: a status block, or exit 1060 (see :func:`parse_sc_query`)."""
    return _exit_code(f"sc.exe query {_service(name)}")


def _depend_value(depends_on: Sequence[str]) -> str:
    if not depends_on:
        return _NO_DEPENDENCIES
    return "/".join(check_service_name(dependency) for dependency in depends_on)


def create_service(name: str, command_line: str, depends_on: Sequence[str] = ()) -> str:
    """``sc.exe create`` with automatic start; exit 1073 if the service exists.

    Args:
        name: Service name.
        command_line: The whole binary path value (exe and arguments), without ``"``.
        depends_on: Names of services this one needs running first.
    """
    parts = [
        f"sc.exe create {_service(name)}",
        f"binPath= {quoting.native_arg(command_line, what='service command line')}",
        "start= auto",
    ]
    if depends_on:
        parts.append(f"depend= {quoting.native_arg(_depend_value(depends_on), what='depend')}")
    return _exit_code(" ".join(parts))


def change_service(name: str, command_line: str, depends_on: Sequence[str] = ()) -> str:
    """``sc.exe config`` of command line, automatic start and dependencies (``/`` = none)."""
    return _exit_code(
        f"sc.exe config {_service(name)} "
        f"binPath= {quoting.native_arg(command_line, what='service command line')} "
        f"start= auto depend= {quoting.native_arg(_depend_value(depends_on), what='depend')}"
    )


def set_service_description(name: str, text: str) -> str:
    """``sc.exe description``; ``[SC] ChangeServiceConfig2 SUCCESS`` or exit 1060."""
    return _exit_code(
        f"sc.exe description {_service(name)} {quoting.native_arg(text, what='description')}"
    )


def set_service_recovery(name: str) -> str:
    """``sc.exe failure``: restart after 10 s, three times; reset the count after a day."""
    return _exit_code(
        f"sc.exe failure {_service(name)} reset= 86400 "
        "actions= restart/10000/restart/10000/restart/10000"
    )


def start_service(name: str) -> str:
    """``sc.exe start``; 1056 already running, 1060 missing, 1075 dependency missing."""
    return _exit_code(f"sc.exe start {_service(name)}")


def stop_service(name: str) -> str:
    """``sc.exe stop``; 1062 not started, 1051 dependents running."""
    return _exit_code(f"sc.exe stop {_service(name)}")


def delete_service(name: str) -> str:
    """``sc.exe delete``; 1060 missing, 1072 already marked for deletion."""
    return _exit_code(f"sc.exe delete {_service(name)}")


def hostname() -> str:
    """Answer the computer's host name (see :func:`parse_hostname`)."""
    return "hostname"


def network_config() -> str:
    """``ipconfig /all`` (see :func:`parse_ipconfig`)."""
    return "ipconfig /all"


def os_build() -> str:
    """Answer the OS build number, e.g. ``20348`` (see :func:`parse_os_build`)."""
    return (
        "(Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion')"
        ".CurrentBuildNumber"
    )


def os_caption() -> str:
    """Answer e.g. ``Microsoft Windows Server 2022 Datacenter``."""
    return "(Get-CimInstance -ClassName Win32_OperatingSystem).Caption"


def containers_feature() -> str:
    """List the Containers optional feature (see :func:`parse_feature_state`)."""
    return "Get-WindowsOptionalFeature -Online -FeatureName Containers"


def enable_containers_feature() -> str:
    """Install the Containers feature (needs a reboot; see :func:`parse_restart_needed`)."""
    return "$ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name Containers"


def reboot() -> str:
    """Reboot now; the connection usually drops without an exit status."""
    return "Restart-Computer -Force"


def process_listing(name: str) -> str:
    """List processes named ``name`` (without ``.exe``); nothing when none runs."""
    quoted = quoting.ps_quote(check_service_name(name), what="process name")
    return f"Get-Process -Name {quoted} -ErrorAction SilentlyContinue"


# --- Answers ----------------------------------------------------------------------------------


class ScExitCode(enum.IntEnum):
    """Win32 codes sc.exe exits with (``docs/windows-surface.md``, windows-commands.md §3.7)."""

    SUCCESS = 0
    FILE_NOT_FOUND = 2
    ACCESS_DENIED = 5
    DEPENDENT_SERVICES_RUNNING = 1051
    SERVICE_REQUEST_TIMEOUT = 1053
    SERVICE_ALREADY_RUNNING = 1056
    SERVICE_DISABLED = 1058
    SERVICE_DOES_NOT_EXIST = 1060
    SERVICE_CANNOT_ACCEPT_CTRL = 1061
    SERVICE_NOT_ACTIVE = 1062
    SERVICE_DEPENDENCY_FAIL = 1068
    SERVICE_LOGON_FAILED = 1069
    SERVICE_MARKED_FOR_DELETE = 1072
    SERVICE_EXISTS = 1073
    SERVICE_DEPENDENCY_DELETED = 1075
    SERVICE_NEVER_STARTED = 1077
    INVALID_COMMAND_LINE = 1639


def sc_exit_code(exit_status: int | None) -> ScExitCode | int | None:
    """Map an exit status to :class:`ScExitCode` when known; others and ``None`` pass through."""
    if exit_status is None:
        return None
    try:
        return ScExitCode(exit_status)
    except ValueError:
        return exit_status


class ServiceState(enum.IntEnum):
    """``STATE`` of ``sc.exe query``."""

    STOPPED = 1
    START_PENDING = 2
    STOP_PENDING = 3
    RUNNING = 4
    CONTINUE_PENDING = 5
    PAUSE_PENDING = 6
    PAUSED = 7


class StartType(enum.IntEnum):
    """``START_TYPE`` of ``sc.exe qc``."""

    BOOT = 0
    SYSTEM = 1
    AUTO = 2
    DEMAND = 3
    DISABLED = 4


class FeatureState(enum.StrEnum):
    """``State`` of ``Get-WindowsOptionalFeature``."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"
    ENABLE_PENDING = "EnablePending"
    DISABLE_PENDING = "DisablePending"
    DISABLED_WITH_PAYLOAD_REMOVED = "DisabledWithPayloadRemoved"


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What ``sc.exe query`` says about one service."""

    name: str
    state: ServiceState
    win32_exit_code: int


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What ``sc.exe qc`` says about one service."""

    name: str
    start_type: StartType
    binary_path: str
    dependencies: tuple[str, ...]
    display_name: str


@dataclasses.dataclass(frozen=True, slots=True)
class IpConfig:
    """The parts of ``ipconfig /all`` the operator uses."""

    host_name: str
    primary_dns_suffix: str
    ipv4_addresses: tuple[str, ...]

    @property
    def fqdn(self) -> str:
        """``host.suffix``, or the host name alone on a workgroup host."""
        if not self.primary_dns_suffix:
            return self.host_name
        return f"{self.host_name}.{self.primary_dns_suffix}"


def _lines(output: str) -> list[str]:
    return [line.rstrip() for line in output.replace("\r\n", "\n").replace("\r", "\n").split("\n")]


def _single_value(output: str, kind: str) -> str:
    values = [line.strip() for line in _lines(output) if line.strip()]
    if len(values) != 1:
        raise CommandOutputError(kind, f"expected one line, got {len(values)}", output)
    return values[0]


def parse_bool(output: str) -> bool:
    """Parse ``True`` / ``False`` (``Test-Path``).

    Raises:
        CommandOutputError: Anything else.
    """
    value = _single_value(output, "boolean")
    if value == "True":
        return True
    if value == "False":
        return False
    raise CommandOutputError("boolean", "expected True or False", output)


_HEX64: Final = re.compile(r"[0-9A-Fa-f]{64}")


def parse_file_hash(output: str) -> str | None:
    """Parse the answer of :func:`file_hash` into lower-case hex.

    Returns:
        The lower-case hex digest, or ``None`` when the output is empty (missing file).

    Raises:
        CommandOutputError: Output that is neither empty nor one 64-hex-digit line.
    """
    if not output.strip():
        return None
    value = _single_value(output, "file hash")
    if not _HEX64.fullmatch(value):
        raise CommandOutputError("file hash", "expected 64 hex digits", output)
    return value.lower()


def parse_hostname(output: str) -> str:
    """Parse ``hostname`` (the name as configured, not lower-cased)."""
    value = _single_value(output, "hostname")
    if any(char.isspace() for char in value):
        raise CommandOutputError("hostname", "contains whitespace", output)
    return value


def parse_node_name(output: str) -> str:
    """The node name a kubelet without ``--hostname-override`` registers: the host name, lower-cased.

    Args:
        output: The answer of :func:`hostname`.
    """
    return parse_hostname(output).lower()


def parse_os_build(output: str) -> int:
    """Parse the OS build number (``17763``, ``20348``, ``26100``...)."""
    value = _single_value(output, "OS build")
    if not value.isdigit():
        raise CommandOutputError("OS build", "expected a number", output)
    return int(value)


def windows_build_label(build: int) -> str:
    """The ``node.kubernetes.io/windows-build`` value for a build number: ``10.0.<build>``."""
    return f"10.0.{build}"


def _sc_fields(output: str) -> list[tuple[str, list[str]]]:
    """Split an sc.exe block into ``(LABEL, [values])``; continuation lines extend the previous."""
    fields: list[tuple[str, list[str]]] = []
    for raw in _lines(output):
        line = raw.strip()
        if not line or line.startswith("[SC]"):
            continue
        if line.startswith("SERVICE_NAME:"):
            fields.append(("SERVICE_NAME", [line.partition(":")[2].strip()]))
            continue
        label, sep, value = line.partition(":")
        if not sep:
            continue  # the controls line "(STOPPABLE, ...)" and other free text
        label = label.strip()
        if not label:
            if fields:
                fields[-1][1].append(value.strip())
            continue
        fields.append((label, [value.strip()]))
    return fields


def _field(fields: list[tuple[str, list[str]]], label: str, kind: str, output: str) -> list[str]:
    for name, values in fields:
        if name == label:
            return values
    raise CommandOutputError(kind, f"no {label} line", output)


def _leading_int(value: str, label: str, kind: str, output: str) -> int:
    token = value.split()[0] if value.split() else ""
    if not token.isdigit():
        raise CommandOutputError(kind, f"{label} is not a number", output)
    return int(token)


def parse_sc_query(output: str) -> ServiceStatus:
    """Parse a successful ``sc.exe query`` block.

    Raises:
        CommandOutputError: No ``SERVICE_NAME`` or ``STATE`` line, or an unknown state.
    """
    kind = "sc.exe query"
    fields = _sc_fields(output)
    name = _field(fields, "SERVICE_NAME", kind, output)[0]
    state_value = _field(fields, "STATE", kind, output)[0]
    code = _leading_int(state_value, "STATE", kind, output)
    try:
        state = ServiceState(code)
    except ValueError:
        raise CommandOutputError(kind, f"unknown STATE {code}", output) from None
    exit_code = 0
    for label, values in fields:
        if label == "WIN32_EXIT_CODE":
            exit_code = _leading_int(values[0], label, kind, output)
    return ServiceStatus(name=name, state=state, win32_exit_code=exit_code)


def parse_sc_qc(output: str) -> ServiceConfig:
    """Parse a successful ``sc.exe qc`` block.

    Raises:
        CommandOutputError: A required line is missing or malformed.
    """
    kind = "sc.exe qc"
    fields = _sc_fields(output)
    name = _field(fields, "SERVICE_NAME", kind, output)[0]
    start_value = _field(fields, "START_TYPE", kind, output)[0]
    start_code = _leading_int(start_value, "START_TYPE", kind, output)
    try:
        start_type = StartType(start_code)
    except ValueError:
        raise CommandOutputError(kind, f"unknown START_TYPE {start_code}", output) from None
    binary_path = _binary_path(output, kind)
    dependencies = tuple(value for value in _field(fields, "DEPENDENCIES", kind, output) if value)
    display = [values for label, values in fields if label == "DISPLAY_NAME"]
    display_name = display[0][0] if display else name
    return ServiceConfig(
        name=name,
        start_type=start_type,
        binary_path=binary_path,
        dependencies=dependencies,
        display_name=display_name,
    )


def _binary_path(output: str, kind: str) -> str:
    # The path itself contains ':' (C:\...), so take everything after the first ': ' of the line.
    for raw in _lines(output):
        line = raw.strip()
        if line.startswith("BINARY_PATH_NAME"):
            _, sep, value = line.partition(":")
            if sep:
                return value.strip()
    raise CommandOutputError(kind, "no BINARY_PATH_NAME line", output)


def parse_feature_state(output: str) -> FeatureState:
    """Parse the ``State`` of ``Get-WindowsOptionalFeature`` (``EnablePending`` is not enabled)."""
    for raw in _lines(output):
        label, sep, value = raw.partition(":")
        if sep and label.strip() == "State":
            try:
                return FeatureState(value.strip())
            except ValueError:
                raise CommandOutputError("feature", "unknown State", output) from None
    raise CommandOutputError("feature", "no State line", output)


def parse_restart_needed(output: str) -> bool:
    """Parse ``Install-WindowsFeature``'s table: whether the ``Restart Needed`` column says Yes."""
    for raw in _lines(output):
        columns = raw.split()
        if len(columns) >= 2 and columns[0] in ("True", "False"):
            return columns[1] == "Yes"
    raise CommandOutputError("Install-WindowsFeature", "no result row", output)


def parse_process_running(output: str) -> bool:
    """Parse :func:`process_listing`: any non-empty output means at least one process runs."""
    return bool(output.strip())


_IPCONFIG_LINE: Final = re.compile(r"^\s+(?P<label>[^.:]+?)[ .]*:\s?(?P<value>.*)$")


def parse_ipconfig(output: str) -> IpConfig:
    """Parse ``ipconfig /all`` into host name, primary DNS suffix and IPv4 addresses.

    Raises:
        CommandOutputError: No ``Host Name`` line.
    """
    host_name: str | None = None
    suffix = ""
    addresses: list[str] = []
    for raw in _lines(output):
        match = _IPCONFIG_LINE.match(raw)
        if not match:
            continue
        label = match["label"].strip()
        value = match["value"].strip()
        if label == "Host Name" and host_name is None:
            host_name = value
        elif label == "Primary Dns Suffix" and not suffix:
            suffix = value
        elif label.startswith("IPv4 Address") or label == "Autoconfiguration IPv4 Address":
            candidate = value.split("(")[0].strip()
            try:
                ipaddress.IPv4Address(candidate)
            except ValueError:
                continue
            addresses.append(candidate)
    if not host_name:
        raise CommandOutputError("ipconfig", "no Host Name line", output)
    return IpConfig(host_name=host_name, primary_dns_suffix=suffix, ipv4_addresses=tuple(addresses))
