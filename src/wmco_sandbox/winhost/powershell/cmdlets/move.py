"""Move-Item on the file system, with the FileSystemProvider's own error records.

The records come from Windows PowerShell 5.1's ``FileSystemProvider.MoveFileInfoItem`` /
``MoveDirectoryInfoItem``: the .NET ``FileInfo.MoveTo`` exception message (which carries no
path), the id ``MoveFileInfoItemIOError`` (``MoveDirectoryItemIOError`` for a directory) and the
``FileInfo``/``DirectoryInfo`` target. A destination that exists is refused unless ``-Force``
(which deletes it first); a file a running process holds cannot be moved.
"""

from __future__ import annotations

from wmco_sandbox.winhost.core.disk import DirNode, DiskError, FileNode
from wmco_sandbox.winhost.powershell.binding import Invocation, P
from wmco_sandbox.winhost.powershell.cmdlets.files import (
    bound_paths,
    item_object,
    path_record,
    resolve_paths,
)
from wmco_sandbox.winhost.powershell.errors import ErrorRecord, in_use_message
from wmco_sandbox.winhost.powershell.registry import fq, register
from wmco_sandbox.winhost.powershell.values import to_str

__all__: list[str] = []

_EXISTS = "Cannot create a file when that file already exists."
_PART_MISSING = "Could not find a part of the path."


def _io_record(inv: Invocation, message: str, target: str, is_dir: bool) -> ErrorRecord:
    error_id = "MoveDirectoryItemIOError" if is_dir else "MoveFileInfoItemIOError"
    return ErrorRecord(
        message, fq(inv, error_id), "WriteError", target=target,
        target_type="DirectoryInfo" if is_dir else "FileInfo", reason="IOException",
    )  # fmt: skip


@register("Move-Item", [
    P("Path", "strings", pos=0, sets=("Path",)),
    P("LiteralPath", "strings", aliases=("pspath",), sets=("LiteralPath",)),
    P("Destination", pos=1), P("Force", "switch"), P("PassThru", "switch"), P("Filter"),
    P("Include", "strings"), P("Exclude", "strings"),
])  # fmt: skip
async def move_item(inv: Invocation) -> list[object]:
    """Move-Item: rename or move files and directories."""
    session = inv.session
    disk = session.machine.disk
    paths, wildcard = bound_paths(inv)
    destination = to_str(inv.arg("Destination", session.cwd))
    out: list[object] = []
    for path in paths:
        found = resolve_paths(inv, path, wildcard)
        if not found:
            inv.error(path_record(inv, path))
            continue
        for source in found:
            src_parts = disk.canonical(disk.parse(source, session.cwd))
            shown = disk.format(src_parts)
            node = disk.lookup(src_parts)
            is_dir = isinstance(node, DirNode)
            try:
                dst_parts = disk.parse(destination, session.cwd)
            except DiskError:
                inv.error(
                    _io_record(inv, "The given path's format is not supported.", shown, is_dir)
                )
                continue
            if isinstance(disk.lookup(dst_parts), DirNode):
                dst_parts = (*dst_parts, src_parts[-1])
            target = disk.format(disk.canonical(dst_parts))
            existing = disk.lookup(dst_parts)
            if existing is not None and isinstance(existing, FileNode) and inv.arg("Force"):
                try:
                    disk.remove(target)
                except DiskError:
                    inv.error(_io_record(inv, _EXISTS, target, False))
                    continue
            try:
                disk.rename(shown, target)
            except DiskError as exc:
                message = {
                    "exists": _EXISTS,
                    "inuse": in_use_message(None),
                    "pathnotfound": _PART_MISSING,
                    "notdir": _PART_MISSING,
                }.get(exc.kind, _PART_MISSING)
                inv.error(_io_record(inv, message, shown, is_dir))
                continue
            if inv.arg("PassThru"):
                moved = disk.lookup(disk.parse(target))
                if moved is not None:
                    out.append(item_object(disk.format(disk.canonical(disk.parse(target))), moved))
    return out
