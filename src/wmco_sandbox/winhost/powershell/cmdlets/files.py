"""The cmdlets the host implements, with their real parameters, output and errors.

Each cmdlet declares its parameters (names, positions, kinds, validate sets) so that the
binder (``powershell/binding.py``) rejects what PowerShell would reject; the implementation then acts
on the :class:`Machine`. Services are in ``services.py``; registry, features and firewall in ``system.py``.
"""

from __future__ import annotations

import fnmatch
import time

from wmco_sandbox.winhost.core.disk import DirNode, DiskError, FileNode
from wmco_sandbox.winhost.powershell.binding import Invocation, P
from wmco_sandbox.winhost.powershell.errors import ErrorRecord, disk_error_record, in_use_message
from wmco_sandbox.winhost.powershell.registry import ENCODINGS, fq, register, strs
from wmco_sandbox.winhost.powershell.values import PSObject, to_str


def path_record(inv: Invocation, path: str, exc: DiskError | None = None) -> ErrorRecord:
    """The record of a failed path operation (``Cannot find path ...`` by default)."""
    record = disk_error_record(exc or DiskError("notfound", path), path)
    record.fqid = fq(inv, record.fqid)
    return record


def bound_paths(inv: Invocation) -> tuple[list[str], bool]:
    """The -LiteralPath / -Path values and whether wildcards apply."""
    if "LiteralPath" in inv.bound:
        return strs(inv, "LiteralPath"), False
    return strs(inv, "Path"), True


def resolve_paths(inv: Invocation, path: str, wildcard: bool) -> list[str]:
    """Existing paths matching ``path`` (wildcards only in the last component)."""
    disk = inv.session.machine.disk
    if not wildcard or not any(c in path for c in "*?["):
        return [path] if disk.get(path) is not None else []
    head, _, pattern = path.replace("/", "\\").rpartition("\\")
    try:
        parts = disk.parse(head + "\\" if head.endswith(":") else head or ".", inv.session.cwd)
    except DiskError:
        return []
    parent = disk.lookup(parts)
    if not isinstance(parent, DirNode):
        return []
    pattern = pattern.lower()
    return [
        disk.format((*parts, shown))
        for key, (shown, _) in sorted(parent.children.items())
        if fnmatch.fnmatchcase(key, pattern)
    ]


def _is_registry(path: str) -> bool:
    return path.lower().startswith(("hklm:", "hkcu:", "registry::"))


def _registry_key(path: str) -> str:
    return path.lower().rstrip("\\")


@register("Get-Help", [P("Name", pos=0), P("Full", "switch"), P("Detailed", "switch")])
async def get_help(inv: Invocation) -> list[object]:
    """Get-Help: the help-system topic (the liveness probe)."""
    text = (
        "\r\nTOPIC\r\n    Windows PowerShell Help System\r\n\r\nSHORT DESCRIPTION\r\n"
        "    Displays help about Windows PowerShell cmdlets and concepts.\r\n\r\nLONG DESCRIPTION\r\n"
        "    Windows PowerShell Help describes Windows PowerShell cmdlets,\r\n"
        "    functions, scripts, and modules, and explains concepts, including\r\n"
        "    the elements of the Windows PowerShell language.\r\n"
    )
    return [text.rstrip("\r\n")]


@register("Test-Path", [
    P("Path", "strings", pos=0, sets=("Path",)), P("LiteralPath", "strings", aliases=("pspath",), sets=("LiteralPath",)),
    P("PathType", values=("Any", "Container", "Leaf"), enum_type="Microsoft.PowerShell.Commands.TestPathType"),
    P("IsValid", "switch"),
])  # fmt: skip
async def test_path(inv: Invocation) -> list[object]:
    """Test-Path: True/False for files, directories and registry keys."""
    paths, wildcard = bound_paths(inv)
    if not paths:
        raise inv.fail(ErrorRecord(
            "Cannot process command because of one or more missing mandatory parameters: Path.",
            fq(inv, "MissingMandatoryParameter"), "InvalidArgument",
            reason="ParameterBindingException",
        ))  # fmt: skip
    kind = inv.arg("PathType", "Any")
    machine = inv.session.machine
    out: list[object] = []
    for path in paths:
        if _is_registry(path):
            out.append(_registry_key(path) in machine.registry and kind != "Leaf")
            continue
        found = resolve_paths(inv, path, wildcard)
        nodes = [machine.disk.get(p) for p in found]
        if kind == "Leaf":
            nodes = [n for n in nodes if isinstance(n, FileNode)]
        elif kind == "Container":
            nodes = [n for n in nodes if isinstance(n, DirNode)]
        out.append(bool(nodes))
    return out


def _hash_object(path: str, digest: bytes) -> PSObject:
    return PSObject(
        "Microsoft.Powershell.Utility.FileHash",
        {"Algorithm": "SHA256", "Hash": digest.hex().upper(), "Path": path},
        widths=[15, 70, 0],
    )


@register("Get-FileHash", [
    P("Path", "strings", pos=0, sets=("Path",)), P("LiteralPath", "strings", aliases=("pspath",), sets=("LiteralPath",)),
    P("InputStream", "object"),
    P("Algorithm", values=("SHA1", "SHA256", "SHA384", "SHA512", "MACTripleDES", "MD5", "RIPEMD160")),
])  # fmt: skip
async def get_file_hash(inv: Invocation) -> list[object]:
    """Get-FileHash: SHA256 only (other algorithms pass binding but are not simulated)."""
    import hashlib

    algorithm = to_str(inv.arg("Algorithm", "SHA256"))
    paths, wildcard = bound_paths(inv)
    disk = inv.session.machine.disk
    out: list[object] = []
    for path in paths:
        found = resolve_paths(inv, path, wildcard)
        if not found:
            record = path_record(inv, path)
            record.activity, record.fqid = (
                "Resolve-Path",
                ("PathNotFound,Microsoft.PowerShell.Commands.ResolvePathCommand"),
            )
            inv.error(record)
            continue
        for p in found:
            node = disk.get(p)
            if not isinstance(node, FileNode):
                continue
            shown = disk.format(disk.canonical(disk.parse(p)))
            if algorithm == "SHA256":
                digest = node.sha256()
            elif node.data is not None:
                digest = hashlib.new(
                    algorithm.lower().replace("ripemd160", "ripemd160"), node.data
                ).digest()
            else:
                digest = node.sha256()
            obj = _hash_object(shown, digest)
            obj.props["Algorithm"] = algorithm
            out.append(obj)
    return out


def _dir_render(objs: list[PSObject]) -> str:
    blocks: list[str] = []
    parent = None
    for o in objs:
        if o.get("Parent") != parent:
            parent = o.get("Parent")
            blocks.append(
                f"\r\n\r\n    Directory: {parent}\r\n\r\n\r\n"
                "Mode                LastWriteTime         Length Name\r\n"
                "----                -------------         ------ ----\r\n"
            )
        stamp = time.localtime(float(o.get("mtime") or 0))  # type: ignore[arg-type]
        hour = stamp.tm_hour % 12 or 12
        when = f"{stamp.tm_mon}/{stamp.tm_mday}/{stamp.tm_year}".rjust(10)
        when += f" {hour:>2}:{stamp.tm_min:02d} {'AM' if stamp.tm_hour < 12 else 'PM'}"
        length = to_str(o.get("Length"))
        blocks.append(f"{to_str(o.get('Mode')):<6}  {when} {length:>14} {o.get('Name')}\r\n")
    return "".join(blocks) + "\r\n\r\n"


def item_object(disk_path: str, node: FileNode | DirNode) -> PSObject:
    """A FileInfo/DirectoryInfo-like object for an item."""
    parent, _, name = disk_path.rpartition("\\")
    is_dir = isinstance(node, DirNode)
    return PSObject(
        "System.IO.DirectoryInfo" if is_dir else "System.IO.FileInfo",
        {
            "Mode": "d-----" if is_dir else "-a----",
            "Name": name,
            "FullName": disk_path,
            "Parent": (parent + "\\") if parent.endswith(":") else parent,
            "Length": "" if is_dir else node.size,  # type: ignore[union-attr]
            "mtime": node.mtime,
        },
        render=_dir_render,
    )


@register("New-Item", [
    P("Path", "strings", pos=0), P("Name"), P("ItemType", aliases=("type",)),
    P("Value", "object", pos=1), P("Force", "switch"),
])  # fmt: skip
async def new_item(inv: Invocation) -> list[object]:
    """New-Item -ItemType Directory|File (also ``mkdir``/``md``)."""
    disk = inv.session.machine.disk
    kind = to_str(inv.arg("ItemType", "")).lower()
    if inv.node.name.lower() in ("mkdir", "md"):
        kind = "directory"
    out: list[object] = []
    for base in strs(inv, "Path", [inv.session.cwd]):
        path = to_str(base)
        if inv.arg("Name"):
            path = path.rstrip("\\") + "\\" + to_str(inv.arg("Name"))
        try:
            parts = disk.parse(path, inv.session.cwd)
        except DiskError as exc:
            inv.error(path_record(inv, path, exc))
            continue
        shown = disk.format(disk.canonical(parts))
        existing = disk.lookup(parts)
        try:
            if kind in ("directory", "container"):
                if existing is not None and not (
                    inv.arg("Force") and isinstance(existing, DirNode)
                ):
                    inv.error(ErrorRecord(
                        f"An item with the specified name {shown} already exists.",
                        fq(inv, "DirectoryExist"), "ResourceExists", target=shown,
                        target_type="String", reason="IOException",
                    ))  # fmt: skip
                    continue
                node: FileNode | DirNode = disk.mkdir(shown)
            elif kind in ("file", ""):
                if existing is not None and not inv.arg("Force"):
                    inv.error(ErrorRecord(
                        f"The file '{shown}' already exists.", fq(inv, "NewItemIOError"),
                        "WriteError", target=shown, target_type="String", reason="IOException",
                    ))  # fmt: skip
                    continue
                if inv.arg("Force"):
                    disk.mkdir(disk.format(parts[:-1]))
                node = disk.write_file(shown, to_str(inv.arg("Value")).encode("cp1252", "replace"))
            else:
                raise inv.fail(ErrorRecord(
                    "The type is not a known type for the file system. Only \"file\" and "
                    "\"directory\" can be created.", fq(inv, "Argument"), "InvalidArgument",
                    reason="PSArgumentException",
                ))  # fmt: skip
        except DiskError as exc:
            if exc.kind == "inuse":
                inv.error(ErrorRecord(
                    in_use_message(exc.path), fq(inv, "NewItemIOError"), "WriteError",
                    target=shown, target_type="String", reason="IOException",
                ))  # fmt: skip
            else:
                inv.error(path_record(inv, shown, exc))
            continue
        out.append(item_object(disk.format(disk.canonical(parts)), node))
    return out


@register("Remove-Item", [
    P("Path", "strings", pos=0, sets=("Path",)), P("LiteralPath", "strings", aliases=("pspath",), sets=("LiteralPath",)),
    P("Recurse", "switch"), P("Force", "switch"), P("Include", "strings"),
    P("Exclude", "strings"), P("Filter"),
])  # fmt: skip
async def remove_item(inv: Invocation) -> list[object]:
    """Remove-Item: files, directories (-Recurse), registry keys not supported."""
    disk = inv.session.machine.disk
    paths, wildcard = bound_paths(inv)
    piped = not paths and bool(inv.input)
    if piped:
        paths = [to_str(o.get("FullName")) for o in inv.input if isinstance(o, PSObject)]
        wildcard = False
    for path in paths:
        found = resolve_paths(inv, path, wildcard)
        if not found:
            if not piped:  # piped children already went with their removed parent
                inv.error(path_record(inv, path))
            continue
        for p in found:
            try:
                disk.remove(p, recursive=bool(inv.arg("Recurse")))
            except DiskError as exc:
                if exc.kind == "inuse":
                    _in_use_records(inv, disk.format(disk.canonical(disk.parse(p))), exc)
                elif exc.kind == "notempty":
                    inv.error(ErrorRecord(
                        f"The item at {p} has children and the Recurse parameter was not "
                        "specified. If you continue, all children will be removed with the item. "
                        "Are you sure you want to continue?", fq(inv, "DirectoryNotEmpty"),
                        "WriteError", target=p, target_type="String", reason="IOException",
                    ))  # fmt: skip
                else:
                    inv.error(path_record(inv, p, exc))
    return []


def _cannot_remove(inv: Invocation, path: str, reason: str, target_type: str) -> ErrorRecord:
    return ErrorRecord(
        f"Cannot remove item {path}: {reason}", fq(inv, "RemoveFileSystemItemIOError"),
        "WriteError", target=path, target_type=target_type, reason="IOException",
    )  # fmt: skip


def _in_use_records(inv: Invocation, root: str, exc: DiskError) -> None:
    """Remove-Item met held files: one record per file, then one per directory left behind."""
    held = exc.held or (exc.path,)
    for path in held:
        inv.error(_cannot_remove(inv, path, in_use_message(path), "FileInfo"))
    left: set[str] = set()
    for path in held:
        parent = path.rsplit("\\", 1)[0]
        while len(parent) >= len(root) and parent.lower() != path.lower():
            left.add(parent)
            if parent.lower() == root.lower():
                break
            parent = parent.rsplit("\\", 1)[0]
    for directory in sorted(left, key=lambda d: -d.count("\\")):
        inv.error(_cannot_remove(inv, directory, "The directory is not empty.", "DirectoryInfo"))


def _encode(text: str, encoding: str) -> bytes:
    enc = encoding.lower()
    if enc == "unicode":
        return b"\xff\xfe" + text.encode("utf-16-le")
    if enc == "bigendianunicode":
        return b"\xfe\xff" + text.encode("utf-16-be")
    if enc == "utf8":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    if enc == "utf32":
        return b"\xff\xfe\x00\x00" + text.encode("utf-32-le")
    if enc == "ascii":
        return text.encode("ascii", "replace")
    if enc == "oem":
        return text.encode("cp437", "replace")
    return text.encode("cp1252", "replace")


@register("Set-Content", [
    P("Path", "strings", pos=0, sets=("Path",)), P("LiteralPath", "strings", aliases=("pspath",), sets=("LiteralPath",)),
    P("Value", "object", pos=1), P("Encoding", values=ENCODINGS,
    enum_type="Microsoft.PowerShell.Commands.FileSystemCmdletProviderEncoding"),
    P("NoNewline", "switch"), P("Force", "switch"), P("PassThru", "switch"),
])  # fmt: skip
async def set_content(inv: Invocation) -> list[object]:
    """Set-Content: write text (each value + CRLF unless -NoNewline) in the given encoding."""
    disk = inv.session.machine.disk
    value = inv.arg("Value", inv.input or None)
    items = value if isinstance(value, list) else ([] if value is None else [value])
    sep = "" if inv.arg("NoNewline") else "\r\n"
    text = "".join(to_str(v) + sep for v in items)
    data = _encode(text, to_str(inv.arg("Encoding", "Default")))
    paths, wildcard = bound_paths(inv)
    for path in paths:
        targets = resolve_paths(inv, path, wildcard) or [path]
        for p in targets:
            try:
                disk.write_file(disk.format(disk.parse(p, inv.session.cwd)), data)
            except DiskError as exc:
                record = path_record(inv, p, exc)
                if exc.kind == "full":
                    record.target, record.target_type = "", ""
                inv.error(record)
    return []


@register("Get-Content", [
    P("Path", "strings", pos=0, sets=("Path",)), P("LiteralPath", "strings", aliases=("pspath",), sets=("LiteralPath",)),
    P("Raw", "switch"), P("Encoding", values=ENCODINGS), P("Tail", "int", aliases=("last",)),
])  # fmt: skip
async def get_content(inv: Invocation) -> list[object]:
    """Get-Content: lines of a text file (the last -Tail N of them; the whole text with -Raw)."""
    disk = inv.session.machine.disk
    out: list[object] = []
    paths, wildcard = bound_paths(inv)
    for path in paths:
        found = resolve_paths(inv, path, wildcard)
        node = disk.get(found[0]) if found else None
        if not isinstance(node, FileNode) or node.data is None:
            inv.error(path_record(inv, path))
            continue
        raw = bytes(node.data)
        if raw.startswith(b"\xff\xfe"):
            text = raw[2:].decode("utf-16-le", "replace")
        elif raw.startswith(b"\xef\xbb\xbf"):
            text = raw[3:].decode("utf-8", "replace")
        else:
            text = raw.decode("cp1252", "replace")
        if inv.arg("Raw"):
            out.append(text)
        else:
            lines = text.replace("\r\n", "\n").split("\n")[: -1 if text.endswith("\n") else None]
            tail = inv.arg("Tail")
            if isinstance(tail, int) and tail >= 0:
                lines = lines[len(lines) - tail :] if tail else []
            out.extend(lines)
    return out


@register("Get-ChildItem", [
    P("Path", "strings", pos=0, sets=("Path",)), P("LiteralPath", "strings", sets=("LiteralPath",)),
    P("Filter", pos=1), P("Recurse", "switch"), P("Force", "switch"), P("Exclude", "strings"),
    P("Include", "strings"), P("File", "switch"), P("Directory", "switch"), P("Name", "switch"),
])  # fmt: skip
async def get_child_item(inv: Invocation) -> list[object]:
    """Get-ChildItem: directory listing (-Recurse, -Exclude/-Include on leaf names)."""
    disk = inv.session.machine.disk
    paths, wildcard = bound_paths(inv)
    excludes = [e.lower() for e in strs(inv, "Exclude")]
    out: list[object] = []

    def walk(prefix: str, node: DirNode) -> None:
        for shown, child in sorted(node.children.values(), key=lambda e: e[0].lower()):
            full = prefix.rstrip("\\") + "\\" + shown
            skip = any(
                fnmatch.fnmatchcase(shown.lower(), e) or fnmatch.fnmatchcase(full.lower(), e)
                for e in excludes
            )
            if not skip:
                out.append(item_object(full, child))
            if inv.arg("Recurse") and isinstance(child, DirNode):
                walk(full, child)

    for path in paths or [inv.session.cwd]:
        found = resolve_paths(inv, path, wildcard)
        if not found:
            inv.error(path_record(inv, path))
            continue
        for p in found:
            node = disk.get(p)
            shown = disk.format(disk.canonical(disk.parse(p)))
            if isinstance(node, DirNode):
                walk(shown, node)
            elif node is not None:
                out.append(item_object(shown, node))
    return out
