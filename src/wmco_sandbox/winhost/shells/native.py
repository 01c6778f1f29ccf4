"""Native console programs of the host: ``sc.exe``, ``tar``, ``hostname``, ``ipconfig``, ``icacls``.

Each receives the command line exactly as Windows would hand it over and splits it itself with
the C runtime rules, like the real program. Output texts, streams (sc.exe writes everything to
stdout) and exit codes (full Win32 codes such as 1060) follow the reference captures.
"""

from __future__ import annotations

import posixpath

from wmco_sandbox.winhost.core.disk import DirNode, DiskError, FileNode
from wmco_sandbox.winhost.core.machine import Machine, NativeResult
from wmco_sandbox.winhost.core.scm import MESSAGES, START_TYPES, ScmError, Service, State
from wmco_sandbox.winhost.core.tarstream import TarError, TarScanner
from wmco_sandbox.winhost.core.winargv import split_command_line

__all__ = ["NATIVE_PROGRAMS", "run_native"]

NATIVE_PROGRAMS = {"sc", "tar", "hostname", "ipconfig", "icacls"}

_SC_USAGE = (
    "DESCRIPTION:\r\n        SC is a command line program used for communicating with the\r\n"
    "        Service Control Manager and services.\r\nUSAGE:\r\n"
    "        sc <server> [command] [service name] <option1> <option2>...\r\n\r\n"
)


def _sc_fail(api: str, code: int) -> NativeResult:
    return NativeResult(code, f"[SC] {api} FAILED {code}:\r\n\r\n{MESSAGES.get(code, '')}\r\n\r\n")


def _sc_options(args: list[str]) -> dict[str, str] | None:
    """Parse ``opt= value`` / ``opt=value`` pairs (names lower-cased); None when malformed."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if "=" not in arg:
            return None
        name, _, value = arg.partition("=")
        if value == "":
            if i + 1 >= len(args):
                return None
            value = args[i + 1]
            i += 1
        out[name.lower()] = value
        i += 1
    return out


def _state_block(svc: Service, state: State, *, extended: bool) -> str:
    names = {1: "STOPPED", 2: "START_PENDING", 3: "STOP_PENDING", 4: "RUNNING"}
    lines = [
        "",
        f"SERVICE_NAME: {svc.name} ",
        "        TYPE               : 10  WIN32_OWN_PROCESS  ",
        f"        STATE              : {int(state)}  {names[int(state)]} ",
    ]
    if state is State.RUNNING or state is State.STOP_PENDING:
        lines.append("                                (STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)")
    elif state is State.START_PENDING:
        lines.append(
            "                                (NOT_STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)"
        )
    code = svc.exit_code if state is State.STOPPED else 0
    lines += [
        f"        WIN32_EXIT_CODE    : {code}  (0x{code:x})",
        "        SERVICE_EXIT_CODE  : 0  (0x0)",
        "        CHECKPOINT         : 0x0",
        f"        WAIT_HINT          : {'0x7d0' if state is State.START_PENDING else '0x0'}",
    ]
    if extended:
        pid = svc.pid or (svc.last_pid if state is State.START_PENDING else 0)
        lines += [f"        PID                : {pid}", "        FLAGS              :"]
    return "\r\n".join(lines) + "\r\n"


def _qc_block(svc: Service) -> str:
    start = {
        "boot": "0   BOOT_START",
        "system": "1   SYSTEM_START",
        "auto": "2   AUTO_START",
        "delayed-auto": "2   AUTO_START  (DELAYED)",
        "demand": "3   DEMAND_START",
        "disabled": "4   DISABLED",
    }[svc.start_type]
    deps = svc.depend or [""]
    lines = [
        "[SC] QueryServiceConfig SUCCESS",
        "",
        f"SERVICE_NAME: {svc.name}",
        "        TYPE               : 10  WIN32_OWN_PROCESS ",
        f"        START_TYPE         : {start}",
        "        ERROR_CONTROL      : 1   NORMAL",
        f"        BINARY_PATH_NAME   : {svc.bin_path}",
        "        LOAD_ORDER_GROUP   : ",
        "        TAG                : 0",
        f"        DISPLAY_NAME       : {svc.display_name}",
        f"        DEPENDENCIES       : {deps[0]}",
    ]
    lines += [f"                           : {d}" for d in deps[1:]]
    lines.append("        SERVICE_START_NAME : LocalSystem")
    return "\r\n".join(lines) + "\r\n"


def _parse_failure_actions(text: str) -> list[tuple[str, int]] | None:
    parts = text.split("/")
    if len(parts) % 2:
        return None
    out: list[tuple[str, int]] = []
    for action, delay in zip(parts[::2], parts[1::2], strict=True):
        if action.lower() not in ("restart", "run", "reboot", "") or not delay.isdigit():
            return None
        out.append((action.lower(), int(delay)))
    return out


async def _sc(machine: Machine, argv: list[str]) -> NativeResult:
    args = argv[1:]
    if args and args[0].startswith("\\\\"):
        args = args[1:]
    if len(args) < 2:
        return NativeResult(1639 if args else 0, _SC_USAGE)
    command, name, rest = args[0].lower(), args[1], args[2:]
    scm = machine.scm
    opts = _sc_options(rest) if command in ("create", "config", "failure") else {}
    if opts is None:
        return NativeResult(1639, _SC_USAGE)
    try:
        if command == "query" or command == "queryex":
            svc = scm.get(name)
            if svc is None:
                return _sc_fail("EnumQueryServicesStatus:OpenService", 1060)
            return NativeResult(0, _state_block(svc, svc.state, extended=command == "queryex"))
        if command == "qc":
            svc = scm.get(name)
            return NativeResult(0, _qc_block(svc)) if svc else _sc_fail("OpenService", 1060)
        if command == "create":
            return _sc_create(machine, name, opts)
        if command == "config":
            return _sc_config(machine, name, opts)
        if command == "description":
            svc = scm.get(name)
            if svc is None:
                return _sc_fail("OpenService", 1060)
            svc.description = " ".join(rest)
            return NativeResult(0, "[SC] ChangeServiceConfig2 SUCCESS\r\n")
        if command == "qdescription":
            svc = scm.get(name)
            if svc is None:
                return _sc_fail("OpenService", 1060)
            text = f"[SC] QueryServiceConfig2 SUCCESS\r\n\r\nSERVICE_NAME: {svc.name}\r\n"
            return NativeResult(0, text + f"DESCRIPTION:  {svc.description}\r\n")
        if command == "failure":
            svc = scm.get(name)
            if svc is None:
                return _sc_fail("OpenService", 1060)
            if ("reset" in opts) != ("actions" in opts):
                msg = "ERROR:  The reset and actions options must be set simultaneously.\r\n"
                return NativeResult(1639, msg + _SC_USAGE)
            actions = _parse_failure_actions(opts.get("actions", ""))
            if actions is None:
                return NativeResult(1639, _SC_USAGE)
            svc.failure_reset, svc.failure_actions = opts.get("reset"), actions
            return NativeResult(0, "[SC] ChangeServiceConfig2 SUCCESS\r\n")
        if command == "start":
            if scm.get(name) is None:
                return _sc_fail("StartService: OpenService", 1060)
            svc = await scm.start(name)
            return NativeResult(0, _state_block(svc, State.START_PENDING, extended=True))
        if command == "stop":
            if scm.get(name) is None:
                return _sc_fail("OpenService", 1060)
            svc = await scm.stop(name)
            return NativeResult(0, _state_block(svc, State.STOP_PENDING, extended=False))
        if command == "delete":
            if scm.get(name) is None:
                return _sc_fail("OpenService", 1060)
            scm.delete(name)
            return NativeResult(0, "[SC] DeleteService SUCCESS\r\n")
    except ScmError as exc:
        api = {"start": "StartService", "stop": "ControlService", "delete": "DeleteService"}
        return _sc_fail(api.get(command, "OpenService"), exc.code)
    return NativeResult(1639, _SC_USAGE)


def _sc_create(machine: Machine, name: str, opts: dict[str, str]) -> NativeResult:
    if "binpath" not in opts or not set(opts) <= {
        "binpath", "start", "depend", "displayname", "obj", "type", "error", "password", "tag",
        "group",
    }:  # fmt: skip
        return NativeResult(1639, _SC_USAGE)
    start = opts.get("start", "demand").lower()
    if start not in START_TYPES:
        return NativeResult(1639, _SC_USAGE)
    try:
        machine.scm.create(
            name,
            opts["binpath"],
            start_type=start,
            depend=[d for d in opts.get("depend", "").split("/") if d],
            display_name=opts.get("displayname", name),
        )
    except ScmError as exc:
        return _sc_fail("CreateService", exc.code)
    return NativeResult(0, "[SC] CreateService SUCCESS\r\n")


def _sc_config(machine: Machine, name: str, opts: dict[str, str]) -> NativeResult:
    svc = machine.scm.get(name)
    if svc is None:
        return _sc_fail("OpenService", 1060)
    known = {"binpath", "start", "depend", "displayname", "obj", "type", "error", "password"}
    if not opts or not set(opts) <= known:
        return NativeResult(1639, _SC_USAGE)
    start = opts.get("start", svc.start_type).lower()
    if start not in START_TYPES:
        return NativeResult(1639, _SC_USAGE)
    svc.start_type = start
    svc.bin_path = opts.get("binpath", svc.bin_path)
    svc.display_name = opts.get("displayname", svc.display_name)
    if "depend" in opts:
        svc.depend = [d for d in opts["depend"].split("/") if d]
    return NativeResult(0, "[SC] ChangeServiceConfig SUCCESS\r\n")


def _tar(machine: Machine, argv: list[str], cwd: str) -> NativeResult:
    args = argv[1:]
    mode: str | None = None
    archive: str | None = None
    directory = cwd
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--version":
            return NativeResult(0, "bsdtar 3.5.2 - libarchive 3.5.2 zlib/1.2.5.f-ipp\r\n")
        if arg.startswith("--"):
            return NativeResult(1, stderr=f"tar.exe: Option {arg} is not supported\r\n")
        if not arg.startswith("-") and i > 0:
            return NativeResult(1, stderr="tar.exe: Unsupported operand: members not supported\r\n")
        letters = arg.lstrip("-")
        for j, letter in enumerate(letters):
            if letter in "xtc":
                mode = letter
            elif letter in "zv":
                continue
            elif letter in "fC":
                value = letters[j + 1 :] or (args[i + 1] if i + 1 < len(args) else None)
                if value is None:
                    return NativeResult(
                        1, stderr=f"tar.exe: Option -{letter} requires an argument\r\n"
                    )
                if not letters[j + 1 :]:
                    i += 1
                if letter == "f":
                    archive = value
                else:
                    directory = value
                break
            else:
                return NativeResult(1, stderr=f"tar.exe: Option -{letter} is not supported\r\n")
        i += 1
    if mode != "x" or archive is None:
        usage = "Usage:\r\n  List:    tar -tf <archive-filename>\r\n  Extract: tar -xf <archive-filename>\r\n"
        return NativeResult(1, stderr="tar.exe: Must specify one of -c, -r, -t, -u, -x\r\n" + usage)
    disk = machine.disk
    node = disk.get(archive) if not archive.startswith("\\\\") else None
    if not isinstance(node, FileNode):
        return NativeResult(
            1, stderr=f"tar.exe: Error opening archive: Failed to open '{archive}'\r\n"
        )
    target = disk.get(directory)
    if not isinstance(target, DirNode):
        return NativeResult(1, stderr=f"tar.exe: could not chdir to '{directory}'\r\n")
    try:
        if node.data is not None:
            scanner = TarScanner(keep_limit=disk.sink_threshold)
            scanner.feed(bytes(node.data))
            members = scanner.finish()
        elif node.members is not None:
            members = node.members
        else:
            raise TarError(node.tar_error or "Error opening archive: Unrecognized archive format")
    except TarError as exc:
        return NativeResult(1, stderr=f"tar.exe: {exc}\r\n")
    base = disk.format(disk.parse(directory))
    errors: list[str] = []
    for member in members:
        rel = posixpath.normpath(member.name.replace("\\", "/")).lstrip("/")
        if rel.startswith("..") or rel == ".":
            continue
        path = base.rstrip("\\") + "\\" + rel.replace("/", "\\")
        try:
            if member.is_dir:
                disk.mkdir(path)
                continue
            parent = disk.format(disk.parse(path)[:-1])
            disk.mkdir(parent)
            if member.data is not None:
                disk.write_file(path, member.data)
            else:
                disk.write_sunk(path, member.size, member.digest, member.build_info)
        except DiskError as exc:
            reason = {
                "full": "Write failed",
                # libarchive unlinks the existing file first; a running image refuses.
                "inuse": "Can't unlink already-existing object: Permission denied",
            }.get(exc.kind, "Can't create '" + rel + "'")
            errors.append(f"tar.exe: {rel}: {reason}\r\n")
    machine.unpacked.append((archive, tuple(m.name for m in members if not m.is_dir)))
    if errors:
        return NativeResult(
            1, stderr="".join(errors) + "tar.exe: Error exit delayed from previous errors.\r\n"
        )
    return NativeResult(0)


def _ipconfig(machine: Machine, argv: list[str]) -> NativeResult:
    facts = machine.facts
    rows = [
        "",
        "Windows IP Configuration",
        "",
        f"   Host Name . . . . . . . . . . . . : {machine.computer_name}",
        "   Primary Dns Suffix  . . . . . . . : ",
        "   Node Type . . . . . . . . . . . . : Hybrid",
        "   IP Routing Enabled. . . . . . . . : No",
        "   WINS Proxy Enabled. . . . . . . . : No",
        "",
        "Ethernet adapter Ethernet:",
        "",
        "   Connection-specific DNS Suffix  . : ",
        "   Description . . . . . . . . . . . : Simulated Ethernet Adapter",
        f"   Physical Address. . . . . . . . . : {machine.mac_address}",
        "   DHCP Enabled. . . . . . . . . . . : Yes",
        "   Autoconfiguration Enabled . . . . : Yes",
        f"   IPv4 Address. . . . . . . . . . . : {facts.address}(Preferred) ",
        "   Subnet Mask . . . . . . . . . . . : 255.0.0.0",
        "   Default Gateway . . . . . . . . . : ",
        "   NetBIOS over Tcpip. . . . . . . . : Enabled",
    ]
    if len(argv) > 1 and argv[1].lower() not in ("/all", "-all"):
        return NativeResult(1, "\r\nError: unrecognized or incomplete command line.\r\n\r\n")
    if len(argv) == 1:
        rows = [r for r in rows if "Physical" not in r and "DHCP" not in r and "Node" not in r]
    return NativeResult(0, "\r\n".join(rows) + "\r\n")


_PRINCIPALS = {
    "system": "NT AUTHORITY\\SYSTEM", "*s-1-5-18": "NT AUTHORITY\\SYSTEM",
    "administrators": "BUILTIN\\Administrators", "*s-1-5-32-544": "BUILTIN\\Administrators",
    "users": "BUILTIN\\Users", "*s-1-5-32-545": "BUILTIN\\Users",
    "authenticated users": "NT AUTHORITY\\Authenticated Users",
    "*s-1-5-11": "NT AUTHORITY\\Authenticated Users", "everyone": "Everyone",
}  # fmt: skip
_INHERITED = (
    "NT AUTHORITY\\SYSTEM:(I)(F)", "BUILTIN\\Administrators:(I)(F)",
    "NT AUTHORITY\\Authenticated Users:(I)(RX)",
)  # fmt: skip
"""What a file under ``C:\\ProgramData\\ssh`` inherits (the folder's ACL as sshd's install sets it);
the simulator gives every file this inherited set."""


def _icacls_display(path: str, inherit: bool, grants: set[str]) -> str:
    """``icacls <path>``: the entries, explicit ones first, then ``Successfully processed``."""
    order = {"NT AUTHORITY\\SYSTEM": 0, "BUILTIN\\Administrators": 1}
    explicit = []
    for grant in grants:
        principal, _, perm = grant.rpartition(":")
        shown = _PRINCIPALS.get(principal, principal)
        explicit.append((order.get(shown, 2), f"{shown}:({perm.upper()})"))
    entries = [text for _, text in sorted(explicit)] + (list(_INHERITED) if inherit else [])
    pad = " " * (len(path) + 1)
    lines = [f"{path} {entries[0]}" if entries else f"{path} "]
    lines += [pad + entry for entry in entries[1:]]
    return (
        "\r\n".join(lines) + "\r\n\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n"
    )


def _icacls(machine: Machine, argv: list[str]) -> NativeResult:
    if len(argv) < 2:
        return NativeResult(87, "Invalid parameter\r\n")
    path = argv[1]
    node = machine.disk.get(path)
    if node is None:
        text = f"{path}: The system cannot find the file specified.\r\n"
        return NativeResult(
            2, text + "Successfully processed 0 files; Failed processing 1 files\r\n"
        )
    inherit = node.acl_inherit if isinstance(node, FileNode) else True
    grants = set(node.acl_grants) if isinstance(node, FileNode) else set()
    rest = argv[2:]
    if not rest:
        return NativeResult(0, _icacls_display(path, inherit, grants))
    i = 0
    while i < len(rest):
        opt = rest[i].lower()
        if opt == "/inheritance:r":
            inherit = False
        elif opt in ("/inheritance:e", "/inheritance:d"):
            inherit = opt.endswith("e")
        elif opt in ("/grant", "/grant:r") and i + 1 < len(rest):
            grants.add(rest[i + 1].lower())
            i += 1
        else:
            return NativeResult(87, f'Invalid parameter "{rest[i]}"\r\n')
        i += 1
    if isinstance(node, FileNode):
        node.acl_inherit, node.acl_grants = inherit, frozenset(grants)
    text = (
        f"processed file: {path}\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n"
    )
    return NativeResult(0, text)


async def run_native(machine: Machine, name: str, command_line: str, cwd: str) -> NativeResult:
    """Run a native program by base name (``sc``, ``tar``...) with its command line.

    Args:
        machine: The host.
        name: Lower-case base name without ``.exe``.
        command_line: The full command line (program first).
        cwd: Current directory (for relative paths).

    Returns:
        The program's result.
    """
    argv = split_command_line(command_line)
    if name == "sc":
        return await _sc(machine, argv)
    if name == "tar":
        return _tar(machine, argv, cwd)
    if name == "hostname":
        return NativeResult(0, machine.computer_name + "\r\n")
    if name == "ipconfig":
        return _ipconfig(machine, argv)
    if name == "icacls":
        return _icacls(machine, argv)
    program = machine.programs.get(name + ".exe") or machine.programs.get(name)
    if program is not None:
        return program(machine, argv)
    return NativeResult(1, stderr=f"simulated host: no behaviour for program '{argv[0]}'\r\n")
