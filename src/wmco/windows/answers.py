"""Parsers of the answers Windows hosts give to the commands of :mod:`wmco.windows.commands`.

Parsers take the decoded stdout (CRLF already turned into LF by the SSH layer, but they tolerate
CR) and return typed records (frozen dataclasses, enums); they match on codes, field labels and
JSON keys, never on localised messages. Output of another shape raises
:class:`CommandOutputError`, whose message carries a short excerpt for the person reading it.

The HNS answers are JSON arrays in the HNS v1 shape (``windows-networking.md`` §5); only the
fields the operator reads become record attributes, every other field is ignored, and names are
kept verbatim whatever they contain (they are compared, never put into a command).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Callable
from typing import Any, Final, TypeVar

_T = TypeVar("_T")


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


# --- sc.exe, files, OS ---------------------------------------------------------------------------


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


class InstallState(enum.StrEnum):
    """``InstallState`` of ``Get-WindowsFeature`` (Server Manager's view of a role or feature)."""

    AVAILABLE = "Available"
    INSTALLED = "Installed"
    INSTALL_PENDING = "InstallPending"
    UNINSTALL_PENDING = "UninstallPending"
    REMOVED = "Removed"


@dataclasses.dataclass(frozen=True, slots=True)
class InstallResult:
    """The result row of ``Install-WindowsFeature``.

    Attributes:
        success: The ``Success`` column.
        restart_needed: The ``Restart Needed`` column (``Yes``, ``No``, ``Maybe``).
        exit_code: The ``Exit Code`` column as printed (cut to its width: ``SuccessRest...``).
    """

    success: bool
    restart_needed: str
    exit_code: str


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


def _lines(output: str) -> list[str]:
    return [line.rstrip() for line in output.replace("\r\n", "\n").replace("\r", "\n").split("\n")]


def _single_value(output: str, kind: str) -> str:
    values = [line.strip() for line in _lines(output) if line.strip()]
    if len(values) != 1:
        raise CommandOutputError(kind, f"expected one line, got {len(values)}", output)
    return values[0]


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


def parse_install_state(output: str) -> InstallState:
    """Parse ``(Get-WindowsFeature -Name X).InstallState``: one state name.

    An empty answer means Windows does not know the feature (not a Server SKU, or a wrong name).
    """
    value = output.strip()
    if not value:
        raise CommandOutputError("Get-WindowsFeature", "no such feature", output)
    try:
        return InstallState(value)
    except ValueError:
        raise CommandOutputError("Get-WindowsFeature", "unknown InstallState", output) from None


def parse_install_result(output: str) -> InstallResult:
    """Parse ``Install-WindowsFeature``'s table row (``True    Yes            SuccessRest... {X}``)."""
    for raw in _lines(output):
        columns = raw.split()
        if len(columns) >= 3 and columns[0] in ("True", "False"):
            return InstallResult(columns[0] == "True", columns[1], columns[2])
    raise CommandOutputError("Install-WindowsFeature", "no result row", output)


def error_message(stderr: str) -> str:
    """The message of the first PowerShell error record on stderr, on one line.

    ``Install-WindowsFeature : A prerequisite check for the Hyper-V feature failed.`` and the
    numbered reasons that follow become one sentence, without the cmdlet prefix, the
    ``At line:`` position block and the CategoryInfo lines. Empty when stderr is empty.
    """
    lines: list[str] = []
    for raw in _lines(stderr):
        line = raw.strip()
        if line.startswith("At line:") or line.startswith("+ ") or line.startswith("At "):
            break
        if line:
            lines.append(line)
    if not lines:
        return ""
    first, sep, rest = lines[0].partition(" : ")
    if sep and re.fullmatch(r"[A-Za-z]+-[A-Za-z]+", first):
        lines[0] = rest
    return " ".join(lines)


# --- HNS ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class HnsNetwork:
    """One entry of ``Get-HnsNetwork``, as far as the operator reads it.

    Attributes:
        id: ``ID`` (a GUID, upper case on real hosts).
        name: ``Name``.
        type: ``Type`` (``Overlay``, ``L2Bridge``, ``NAT``, ``Transparent``...).
        management_ip: ``ManagementIP``, the host's underlay address (Overlay networks).
        address_prefix: ``Subnets[0].AddressPrefix``.
        gateway_address: ``Subnets[0].GatewayAddress``.
        dr_mac_address: ``DrMacAddress`` (Overlay networks).
    """

    id: str
    name: str
    type: str
    management_ip: str | None = None
    address_prefix: str | None = None
    gateway_address: str | None = None
    dr_mac_address: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class HnsEndpoint:
    """One entry of ``Get-HnsEndpoint``, as far as the operator reads it.

    Attributes:
        id: ``ID`` (a GUID).
        name: ``Name``.
        virtual_network: ``VirtualNetwork``, the ``ID`` of its network.
        ip_address: ``IPAddress`` (allocated by HNS from the network's subnet).
    """

    id: str
    name: str
    virtual_network: str | None = None
    ip_address: str | None = None


def _json_array(output: str, kind: str) -> list[Any]:
    text = output.strip().lstrip("\ufeff").strip()
    try:
        document = json.loads(text)
    except ValueError:
        raise CommandOutputError(kind, "not JSON", output) from None
    if not isinstance(document, list):
        raise CommandOutputError(kind, "not a JSON array", output)
    return document


def _text(entry: dict[str, Any], key: str, kind: str, output: str) -> str | None:
    value = entry.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise CommandOutputError(kind, f"{key} is not a string", output)
    return value


def _required(entry: dict[str, Any], key: str, kind: str, output: str) -> str:
    value = _text(entry, key, kind, output)
    if value is None:
        raise CommandOutputError(kind, f"an entry has no {key}", output)
    return value


def _entries(output: str, kind: str, build: Callable[[dict[str, Any]], _T]) -> tuple[_T, ...]:
    result = []
    for entry in _json_array(output, kind):
        if not isinstance(entry, dict):
            raise CommandOutputError(kind, "an entry is not an object", output)
        result.append(build(entry))
    return tuple(result)


def parse_hns_networks(output: str) -> tuple[HnsNetwork, ...]:
    """Parse ``commands.list_hns_networks``'s JSON array (``[]``: no network).

    Raises:
        CommandOutputError: Not a JSON array of objects with string ``ID``, ``Name``, ``Type``.
    """
    kind = "HNS network list"

    def network(entry: dict[str, Any]) -> HnsNetwork:
        subnets = entry.get("Subnets") or []
        if isinstance(subnets, dict):  # ConvertTo-Json unwraps nothing here, but be lenient
            subnets = [subnets]
        first = subnets[0] if isinstance(subnets, list) and subnets else {}
        if not isinstance(first, dict):
            raise CommandOutputError(kind, "Subnets[0] is not an object", output)
        return HnsNetwork(
            id=_required(entry, "ID", kind, output),
            name=_required(entry, "Name", kind, output),
            type=_required(entry, "Type", kind, output),
            management_ip=_text(entry, "ManagementIP", kind, output),
            address_prefix=_text(first, "AddressPrefix", kind, output),
            gateway_address=_text(first, "GatewayAddress", kind, output),
            dr_mac_address=_text(entry, "DrMacAddress", kind, output),
        )

    return _entries(output, kind, network)


def parse_hns_endpoints(output: str) -> tuple[HnsEndpoint, ...]:
    """Parse ``commands.list_hns_endpoints`` or ``commands.create_host_endpoint`` (``[]``: none).

    Raises:
        CommandOutputError: Not a JSON array of objects with a string ``ID`` (``Name`` may be
            empty or absent).
    """
    kind = "HNS endpoint list"

    def endpoint(entry: dict[str, Any]) -> HnsEndpoint:
        return HnsEndpoint(
            id=_required(entry, "ID", kind, output),
            # kube-proxy creates its sourceVip endpoint without a name (after a reboot).
            name=_text(entry, "Name", kind, output) or "",
            virtual_network=_text(entry, "VirtualNetwork", kind, output),
            ip_address=_text(entry, "IPAddress", kind, output),
        )

    return _entries(output, kind, endpoint)
