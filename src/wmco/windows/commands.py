"""THE builder of every command the operator sends to a Windows host.

Each function returns the exact command string of one form of ``docs/windows-surface.md`` (and,
for HNS, of ``/work/notes/issue8-contract.md`` §3); the simulated host parses exactly these
forms, so a change here is a change of the contract. Every value is quoted by
:mod:`wmco.windows.quoting`; a value that cannot be quoted safely raises
``quoting.UnsafeValueError`` and nothing is sent. The answers are parsed by
:mod:`wmco.windows.answers`.

Native programs (sc.exe) end with ``; exit $LASTEXITCODE``: PowerShell would otherwise squash
their Win32 exit codes (1060, 1073, ...) to 0/1.

The HNS listings wrap the cmdlet in ``@(...)`` and pass it as ``-InputObject``, so the answer is
always one JSON array (``[]`` when there is nothing; piping would give a bare object for one
network and nothing at all for none).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from wmco.windows import quoting

# --- Validation of names and paths ------------------------------------------------------------

_SERVICE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}")
_PROCESS_NAME: Final = _SERVICE_NAME
_WINDOWS_PATH: Final = re.compile(r"[A-Za-z]:\\")
_NO_DEPENDENCIES: Final = "/"
_GUID: Final = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")
_HNS_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_FEATURE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]{0,63}")


def check_name(name: str, pattern: re.Pattern[str], *, what: str, allowed: str) -> str:
    """Refuse a name that is not a safe literal or does not match ``pattern`` as a whole.

    Args:
        name: The value.
        pattern: What the whole value must match.
        what: What it is, for the message (``service name``).
        allowed: The characters ``pattern`` allows, for the message (``A-Z a-z 0-9 _ . -``).

    Raises:
        quoting.UnsafeValueError: The name has other characters.
    """
    quoting.check_literal(name, what=what)
    if not pattern.fullmatch(name):
        raise quoting.UnsafeValueError(what, f"characters other than {allowed}")
    return name


def check_service_name(name: str) -> str:
    """Refuse anything but a plain service name (letters, digits, ``_ . -``; at most 80 chars).

    Raises:
        quoting.UnsafeValueError: The name has other characters.
    """
    return check_name(name, _SERVICE_NAME, what="service name", allowed="A-Z a-z 0-9 _ . -")


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


def _service(name: str) -> str:
    return quoting.native_arg(check_service_name(name), what="service name")


def _exit_code(statement: str, *, bare: bool = False) -> str:
    # ``bare``: the sc.exe statement alone, for a stage of a script (wmco.windows.batch checks
    # $LASTEXITCODE there); otherwise it ends the command with sc.exe's own exit code.
    return statement if bare else quoting.join_statements(statement, "exit $LASTEXITCODE")


def path_literal(path: str, what: str = "path") -> str:
    """An absolute Windows path as a PowerShell literal (:func:`check_windows_path`, quoted)."""
    return _path(path, what)


def service_arg(name: str) -> str:
    """A service name as a native argument (:func:`check_service_name`, quoted)."""
    return _service(name)


def with_exit_code(statement: str) -> str:
    """A native program's statement ending the command with its own exit code."""
    return _exit_code(statement)


# --- Command forms ----------------------------------------------------------------------------


def make_directories(paths: Sequence[str]) -> str:
    """Create several directories and their parents in one statement; no error if they exist."""
    if not paths:
        raise ValueError("no directory to make")
    return (
        f"New-Item -ItemType Directory -Force -Path {','.join(_path(p) for p in paths)} | Out-Null"
    )


_PRINTABLE_ASCII: Final = frozenset(chr(code) for code in range(32, 127)) | {"\t"}


def write_text(path: str, text: str) -> str:
    r"""Write ``text`` to a file with exactly its bytes (ASCII; lines ended by LF or CRLF).

    ``Set-Content -Encoding ascii -NoNewline`` of the lines joined with ``"`n"`` (or
    ``"`r`n"``): every line is a quoted literal, the separator a fixed token, so no value is
    ever expanded. Only for text that is no secret: a command line can end up in Windows' logs
    (PowerShell script block logging), an SFTP upload cannot.

    Raises:
        quoting.UnsafeValueError: The text is not ASCII, mixes line ends, or a line cannot be
            quoted; the path is unsafe.
    """
    if any(char not in _PRINTABLE_ASCII for char in text.replace("\r\n", "").replace("\n", "")):
        raise quoting.UnsafeValueError("file text", "characters other than printable ASCII")
    crlf = "\r\n" in text
    lines = text.split("\r\n") if crlf else text.split("\n")
    if crlf and any("\n" in line for line in lines):
        raise quoting.UnsafeValueError("file text", "both LF and CRLF line ends")
    separator = '"`r`n"' if crlf else '"`n"'
    value = ",".join(quoting.ps_quote(line, what="file text") for line in lines)
    return (
        f"Set-Content -LiteralPath {_path(path)} -Value (@({value}) -join {separator}) "
        "-Encoding ascii -NoNewline"
    )


def unpack_archive(archive: str, directory: str) -> str:
    r"""Unpack a ``.tar.gz`` with the host's ``tar.exe`` into ``directory``, then delete it.

    Nothing happens when the archive is not there: an earlier send of the same script already
    unpacked and deleted it (a script is sent again after a dropped connection). A failure of
    ``tar.exe`` (a member held by a running program: ``Can't unlink already-existing object``)
    ends the script with its exit code, leaving the archive for the next attempt.
    """
    quoted = _path(archive, "archive path")
    return (
        f"if (Test-Path -LiteralPath {quoted}) {{ "
        f"tar.exe -xzf {quoting.native_arg(check_windows_path(archive), what='archive path')} "
        f"-C {quoting.native_arg(check_windows_path(directory), what='directory')}; "
        "if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }; "
        f"Remove-Item -LiteralPath {quoted} -Force }}"
    )


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


def service_state(name: str) -> str:
    """``sc.exe query``: a status block, or exit 1060 (see :func:`parse_sc_query`)."""
    return _exit_code(f"sc.exe query {_service(name)}")


def _depend_value(depends_on: Sequence[str]) -> str:
    if not depends_on:
        return _NO_DEPENDENCIES
    return "/".join(check_service_name(dependency) for dependency in depends_on)


def create_service(
    name: str, command_line: str, depends_on: Sequence[str] = (), *, bare: bool = False
) -> str:
    """``sc.exe create`` with automatic start; exit 1073 if the service exists.

    Args:
        name: Service name.
        command_line: The whole binary path value (exe and arguments), without ``"``.
        depends_on: Names of services this one needs running first.
        bare: The sc.exe statement alone, for a stage of a script.
    """
    parts = [
        f"sc.exe create {_service(name)}",
        f"binPath= {quoting.native_arg(command_line, what='service command line')}",
        "start= auto",
    ]
    if depends_on:
        parts.append(f"depend= {quoting.native_arg(_depend_value(depends_on), what='depend')}")
    return _exit_code(" ".join(parts), bare=bare)


def change_service(
    name: str, command_line: str, depends_on: Sequence[str] = (), *, bare: bool = False
) -> str:
    """``sc.exe config`` of command line, automatic start and dependencies (``/`` = none)."""
    return _exit_code(
        f"sc.exe config {_service(name)} "
        f"binPath= {quoting.native_arg(command_line, what='service command line')} "
        f"start= auto depend= {quoting.native_arg(_depend_value(depends_on), what='depend')}",
        bare=bare,
    )


def set_service_description(name: str, text: str, *, bare: bool = False) -> str:
    """``sc.exe description``; ``[SC] ChangeServiceConfig2 SUCCESS`` or exit 1060."""
    return _exit_code(
        f"sc.exe description {_service(name)} {quoting.native_arg(text, what='description')}",
        bare=bare,
    )


def set_service_recovery(name: str, *, bare: bool = False) -> str:
    """``sc.exe failure``: restart after 10 s, three times; reset the count after a day."""
    return _exit_code(
        f"sc.exe failure {_service(name)} reset= 86400 "
        "actions= restart/10000/restart/10000/restart/10000",
        bare=bare,
    )


def start_service(name: str, *, bare: bool = False) -> str:
    """``sc.exe start``; 1056 already running, 1060 missing, 1075 dependency missing."""
    return _exit_code(f"sc.exe start {_service(name)}", bare=bare)


def stop_service(name: str, *, bare: bool = False) -> str:
    """``sc.exe stop``; 1062 not started, 1051 dependents running."""
    return _exit_code(f"sc.exe stop {_service(name)}", bare=bare)


def delete_service(name: str, *, bare: bool = False) -> str:
    """``sc.exe delete``; 1060 missing, 1072 already marked for deletion."""
    return _exit_code(f"sc.exe delete {_service(name)}", bare=bare)


def hostname() -> str:
    """Answer the computer's host name (see :func:`parse_hostname`)."""
    return "hostname"


def os_build() -> str:
    """Answer the OS build number, e.g. ``20348`` (see :func:`parse_os_build`)."""
    return (
        "(Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion')"
        ".CurrentBuildNumber"
    )


def containers_feature() -> str:
    """List the Containers optional feature (see :func:`parse_feature_state`)."""
    return "Get-WindowsOptionalFeature -Online -FeatureName Containers"


def enable_containers_feature() -> str:
    """Install the Containers feature (needs a reboot; see :func:`parse_restart_needed`)."""
    return "$ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name Containers"


def check_feature_name(name: str) -> str:
    """Refuse a Windows feature name other than letters, digits and ``-`` (``Hyper-V``).

    Raises:
        quoting.UnsafeValueError: The name has other characters.
    """
    return check_name(name, _FEATURE_NAME, what="feature name", allowed="A-Z a-z 0-9 -")


def windows_feature_state(name: str) -> str:
    """Answer a Server Manager feature's ``InstallState`` (``Installed``, ``Available``...).

    ``Get-WindowsFeature`` (ServerManager module) answers nothing for a name it does not know,
    so an empty answer is not a state (see ``answers.parse_install_state``).
    """
    return f"(Get-WindowsFeature -Name {quoting.ps_quote(check_feature_name(name))}).InstallState"


def install_windows_feature(name: str) -> str:
    """Install a Server Manager feature without restarting (see ``answers.parse_install_result``).

    Exit 0 with a ``True`` row, or exit 1 with a ``False`` row and an error record (a failed
    prerequisite check, e.g. Hyper-V on a VM without nested virtualisation).
    """
    return (
        "$ProgressPreference = 'SilentlyContinue'; "
        f"Install-WindowsFeature -Name {quoting.ps_quote(check_feature_name(name))}"
    )


def reboot() -> str:
    """Reboot now; the connection usually drops without an exit status."""
    return "Restart-Computer -Force"


# --- HNS (the Containers feature's HostNetworkingService module, and our hns.psm1) -------------


def check_guid(value: str, *, what: str = "HNS ID") -> str:
    """Refuse anything but a GUID (``8-4-4-4-12`` hex digits), e.g. an HNS network's ``ID``.

    The ID comes from the host's own answer; checking its shape keeps a surprising answer from
    ever becoming part of a command.

    Raises:
        quoting.UnsafeValueError: Not a GUID.
    """
    quoting.check_literal(value, what=what)
    if not _GUID.fullmatch(value):
        raise quoting.UnsafeValueError(what, "something other than a GUID")
    return value


def check_hns_name(name: str, *, what: str = "HNS name") -> str:
    """Refuse an HNS network or endpoint name other than letters, digits and ``_ . -``.

    Raises:
        quoting.UnsafeValueError: The name has other characters.
    """
    return check_name(name, _HNS_NAME, what=what, allowed="A-Z a-z 0-9 _ . -")


def list_hns_networks() -> str:
    """Every HNS network as one JSON array (see ``answers.parse_hns_networks``).

    Without the Containers feature, ``Get-HnsNetwork`` is not recognized (exit 1).
    """
    return "ConvertTo-Json -InputObject @(Get-HnsNetwork) -Depth 5 -Compress"


def list_hns_endpoints() -> str:
    """Every HNS endpoint as one JSON array (see ``answers.parse_hns_endpoints``)."""
    return "ConvertTo-Json -InputObject @(Get-HnsEndpoint) -Depth 5 -Compress"


def create_host_endpoint(network_id: str, *, name: str, module: str, compartment: int) -> str:
    """Create an endpoint on a network with our hns.psm1 and attach it to a host compartment.

    Answers a JSON array holding the new endpoint (its ``IPAddress`` allocated by HNS). Not
    idempotent: a second run makes a second endpoint, so the caller lists endpoints first.

    Args:
        network_id: The network's ``ID`` (a GUID).
        name: The endpoint's name (``VIPEndpoint``).
        module: Path of hns.psm1 on the host.
        compartment: Host network compartment (1).

    Raises:
        quoting.UnsafeValueError: A value is not of its expected shape.
    """
    if isinstance(compartment, bool) or not isinstance(compartment, int) or compartment < 0:
        raise quoting.UnsafeValueError("compartment ID", "something other than a number")
    return quoting.join_statements(
        "$ErrorActionPreference = 'Stop'",
        f"Import-Module -DisableNameChecking {_path(module, 'module path')}",
        f"$ep = New-HNSEndpoint -NetworkId {quoting.ps_quote(check_guid(network_id))} "
        f"-Name {quoting.ps_quote(check_hns_name(name))}",
        f"Attach-HNSHostEndpoint -EndpointID $ep.ID -CompartmentID {compartment} | Out-Null",
        "ConvertTo-Json -InputObject @($ep) -Depth 5 -Compress",
    )


def remove_hns_networks(name: str) -> str:
    """Remove every HNS network called ``name``; nothing and exit 0 when none matches.

    Removing the last network that holds the host's vSwitch cuts connectivity: the connection
    drops and this command gets no exit status.
    """
    quoted = quoting.ps_quote(check_hns_name(name))
    return f"Get-HnsNetwork | Where-Object {{ $_.Name -eq {quoted} }} | Remove-HnsNetwork"


def remove_hns_endpoints(name: str) -> str:
    """Remove every HNS endpoint called ``name``; nothing and exit 0 when none matches."""
    quoted = quoting.ps_quote(check_hns_name(name))
    return f"Get-HnsEndpoint | Where-Object {{ $_.Name -eq {quoted} }} | Remove-HnsEndpoint"


# --- Drift probe and the kubelet's client certificate (issue 11) -------------------------------

PROBE_MARK: Final = "wmco-probe"
"""First word of the section lines of :func:`drift_probe`'s answer (``wmco-probe <section>``)."""

_CERT_END: Final = "-----END CERTIFICATE-----"


def _probe_mark(section: str) -> str:
    return f"Write-Output {quoting.ps_quote(f'{PROBE_MARK} {section}')}"


def drift_probe(
    services: Sequence[str],
    files: Sequence[str],
    *,
    hns: bool,
    identity: bool = False,
    certificate: str | None = None,
    globs: Sequence[str] = (),
) -> str:
    """ONE read-only command answering everything a look at the host compares (one exec).

    The drift probe and the configure flow's first look at a host (issue 12 §3) are this one
    command. Sections, each opened by a ``wmco-probe <section>`` line: ``build`` (the OS build, as
    :func:`os_build`); with ``identity`` ``hostname`` (:func:`hostname`) and ``feature``
    (:func:`containers_feature`); with ``certificate`` ``cert`` (:func:`certificate_block` of that
    file: the certificate only, the key stays on the host); ``qc <name>`` and ``query <name>``
    per service (``sc.exe qc`` / ``sc.exe query``, 1060 blocks for a missing service); ``files``
    (ONE line: a JSON array of ``Get-FileHash`` objects ``{Algorithm, Hash, Path}``; a missing
    file is left out, its error silenced) and ``glob <n>`` the same for each wildcard path of
    ``globs``; with ``hns`` the ``hns-networks`` / ``hns-endpoints`` listings of
    :func:`list_hns_networks` / :func:`list_hns_endpoints`; and a last ``end`` line, so that a
    cut answer is told from a complete one (see ``probeanswers.parse_probe``).

    Args:
        services: Service names to describe.
        files: Absolute Windows paths to hash.
        hns: Whether to list the HNS networks and endpoints (``ovn-hybrid``).
        identity: Whether to ask the host name and the Containers feature's state.
        certificate: A PEM file whose first certificate to answer.
        globs: Absolute Windows paths with a wildcard in the last part, to hash what matches.

    Raises:
        quoting.UnsafeValueError: A name or path cannot be quoted safely.
    """
    statements = [_probe_mark("build"), os_build()]
    if identity:
        statements += [
            _probe_mark("hostname"),
            hostname(),
            _probe_mark("feature"),
            containers_feature(),
        ]
    if certificate is not None:
        statements += [_probe_mark("cert"), certificate_block(certificate)]
    for name in services:
        statements += [
            _probe_mark(f"qc {check_service_name(name)}"),
            f"sc.exe qc {_service(name)}",
            _probe_mark(f"query {name}"),
            f"sc.exe query {_service(name)}",
        ]
    if files:
        paths = ",".join(_path(path) for path in files)
        statements += [
            _probe_mark("files"),
            f"ConvertTo-Json -InputObject @(Get-FileHash -LiteralPath {paths} -Algorithm SHA256 "
            "-ErrorAction SilentlyContinue) -Compress",
        ]
    for index, pattern in enumerate(globs):
        statements += [
            _probe_mark(f"glob {index}"),
            f"ConvertTo-Json -InputObject @(Get-FileHash -Path {_path(pattern)} -Algorithm SHA256 "
            "-ErrorAction SilentlyContinue) -Compress",
        ]
    if hns:
        statements += [
            _probe_mark("hns-networks"),
            list_hns_networks(),
            _probe_mark("hns-endpoints"),
            list_hns_endpoints(),
        ]
    statements.append(_probe_mark("end"))
    return quoting.join_statements(*statements)


def certificate_block(path: str) -> str:
    """Answer the first certificate of a PEM file without its ``END`` line, and nothing else.

    The kubelet's ``kubelet-client-current.pem`` holds its certificate, then its private key:
    splitting at the first ``-----END CERTIFICATE-----`` keeps the key on the host. A missing
    file: an error record on stderr and an empty line (see ``probeanswers.parse_certificate``).
    """
    return (
        f"((Get-Content -LiteralPath {_path(path)} -Raw) -split {quoting.ps_quote(_CERT_END)})[0]"
    )


# --- issue 11 (rekey): administrators_authorized_keys during a key rotation --------------------

AUTHORIZED_KEYS_PATH: Final = "C:\\ProgramData\\ssh\\administrators_authorized_keys"
"""The file Win32-OpenSSH reads the administrators' keys from, on each new connection."""

_KEY_TYPE: Final = re.compile(r"(?:ssh-(?:rsa|ed25519)|ecdsa-sha2-nistp(?:256|384|521))")
_KEY_BLOB: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_KEY_COMMENT: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def _key_blob(blob: str) -> str:
    # Base64 has no wildcard characters of -like (* ? [ ]), so the blob is its own pattern.
    if not _KEY_BLOB.fullmatch(blob):
        raise quoting.UnsafeValueError("public key", "characters other than base64")
    return blob


def authorize_key(key_type: str, blob: str, comment: str, revoke: Sequence[str] = ()) -> str:
    """Make ``administrators_authorized_keys`` hold ``<key_type> <blob> <comment>`` once.

    Every line naming ``blob`` or one of the ``revoke`` blobs is dropped, the others (keys the
    administrator put there) are kept in order, the key line is appended, the file is written
    as ASCII (sshd reads UTF-8/ASCII only) and its ACL is set again to what sshd's StrictModes
    demands (``icacls``' exit status is the command's). Overwriting the file keeps its ACL on
    Windows; the ``icacls`` line makes sure of it. ``$ErrorActionPreference = 'Stop'`` turns a
    failed read or write into exit status 1 before anything else runs. Only public keys: the
    text of this command is safe to log, but is not logged anyway.

    Args:
        key_type: ``ssh-ed25519``, ``ssh-rsa`` or ``ecdsa-sha2-nistp256/384/521``.
        blob: The key's base64.
        comment: The line's comment (``wmco``).
        revoke: Base64 blobs of keys to remove.

    Raises:
        quoting.UnsafeValueError: A value is not of its form.
    """
    if not _KEY_TYPE.fullmatch(key_type):
        raise quoting.UnsafeValueError("public key type", "an unsupported SSH key type")
    if not _KEY_COMMENT.fullmatch(comment):
        raise quoting.UnsafeValueError("key comment", "characters other than A-Z a-z 0-9 _ . -")
    dropped = (_key_blob(blob), *(_key_blob(other) for other in revoke))
    condition = " -and ".join(f"$_ -notlike '*{value}*'" for value in dropped)
    line = quoting.ps_quote(f"{key_type} {blob} {comment}", what="public key")
    return quoting.join_statements(
        "$ErrorActionPreference = 'Stop'",
        f"$f = {_path(AUTHORIZED_KEYS_PATH)}",
        f"$k = @(Get-Content -LiteralPath $f | Where-Object {{ {condition} }}) + {line}",
        "Set-Content -LiteralPath $f -Value $k -Encoding ascii",
        "icacls.exe $f /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'",
        "exit $LASTEXITCODE",
    )
