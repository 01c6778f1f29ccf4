"""PowerShell 5.1 error records and their NormalView text on stderr.

Faithful text matters: the operator may match on it, and a double that words errors
differently would let such matching pass in tests and fail on real hosts. The layout is the
5.1 console layout over a redirected stderr: ``<command> : <message>``, ``At line:L char:C``,
the source line with ``~`` under the failing extent, CategoryInfo (with 5.1's 15+...+15
ellipsis) and FullyQualifiedErrorId, then a line holding one space. Messages are word-wrapped
at the 120-column buffer width as captured over SSH.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wmco_sandbox.winhost.core.disk import DiskError

__all__ = [
    "CMDLET_CLASSES", "ErrorRecord", "PSRuntimeError", "RebootRequested", "disk_error_record",
    "ellipsize", "format_record", "in_use_message",
]  # fmt: skip

WIDTH = 120

CMDLET_CLASSES = {
    "Test-Path": "Microsoft.PowerShell.Commands.TestPathCommand",
    "Get-FileHash": "Get-FileHash",
    "Remove-Item": "Microsoft.PowerShell.Commands.RemoveItemCommand",
    "New-Item": "Microsoft.PowerShell.Commands.NewItemCommand",
    "Set-Content": "Microsoft.PowerShell.Commands.SetContentCommand",
    "Get-Content": "Microsoft.PowerShell.Commands.GetContentCommand",
    "Get-ItemProperty": "Microsoft.PowerShell.Commands.GetItemPropertyCommand",
    "New-ItemProperty": "Microsoft.PowerShell.Commands.NewItemPropertyCommand",
    "Get-Process": "Microsoft.PowerShell.Commands.GetProcessCommand",
    "Get-Service": "Microsoft.PowerShell.Commands.GetServiceCommand",
    "Start-Service": "Microsoft.PowerShell.Commands.StartServiceCommand",
    "Stop-Service": "Microsoft.PowerShell.Commands.StopServiceCommand",
    "Restart-Service": "Microsoft.PowerShell.Commands.RestartServiceCommand",
    "Set-Service": "Microsoft.PowerShell.Commands.SetServiceCommand",
    "Get-CimInstance": "Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand",
    "Get-WindowsOptionalFeature": "Microsoft.Dism.Commands.GetWindowsOptionalFeatureCommand",
    "Install-WindowsFeature": "Microsoft.Windows.ServerManager.Commands.AddWindowsFeatureCommand",
    "Get-WindowsFeature": "Microsoft.Windows.ServerManager.Commands.GetWindowsFeatureCommand",
    "Add-WindowsCapability": "Microsoft.Dism.Commands.AddWindowsCapabilityCommand",
    "Restart-Computer": "Microsoft.PowerShell.Commands.RestartComputerCommand",
    "New-NetFirewallRule": "New-NetFirewallRule",
    "Get-NetFirewallRule": "Get-NetFirewallRule",
    "Write-Output": "Microsoft.PowerShell.Commands.WriteOutputCommand",
    "Write-Host": "Microsoft.PowerShell.Commands.WriteHostCommand",
    "Out-Null": "Microsoft.PowerShell.Commands.OutNullCommand",
    "Where-Object": "Microsoft.PowerShell.Commands.WhereObjectCommand",
    "Get-Help": "Microsoft.PowerShell.Commands.GetHelpCommand",
    "Invoke-Expression": "Microsoft.PowerShell.Commands.InvokeExpressionCommand",
    "Move-Item": "Microsoft.PowerShell.Commands.MoveItemCommand",
    "ConvertTo-Json": "Microsoft.PowerShell.Commands.ConvertToJsonCommand",
    "Import-Module": "Microsoft.PowerShell.Commands.ImportModuleCommand",
}


@dataclass
class ErrorRecord:
    """One PowerShell error record.

    Attributes:
        message: The exception message.
        fqid: FullyQualifiedErrorId (``PathNotFound,Microsoft.PowerShell.Commands...``).
        category: Error category name (``ObjectNotFound``).
        target: Target object text.
        target_type: Target type name (``String``).
        activity: Activity (the cmdlet name); empty for parser/command-not-found errors.
        reason: Exception type name (``ItemNotFoundException``).
        command: Prefix before `` : `` on the first line (usually the cmdlet).
        offset: Start offset in the script of the extent to underline.
        length: Length of the extent.
        parser: True for a ParserError (different layout).
    """

    message: str
    fqid: str
    category: str
    target: str = ""
    target_type: str = ""
    activity: str = ""
    reason: str = ""
    command: str = ""
    offset: int = 0
    length: int = 1
    parser: bool = False


class PSRuntimeError(Exception):
    """A terminating error travelling up the interpreter."""

    def __init__(self, record: ErrorRecord, *, script_terminating: bool = False) -> None:
        super().__init__(record.message)
        self.record = record
        self.script_terminating = script_terminating


def ellipsize(text: str) -> str:
    """5.1 ErrorCategoryInfo.Ellipsize: over 40 characters → first 15 + ``...`` + last 15."""
    return text if len(text) <= 40 else f"{text[:15]}...{text[-15:]}"


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            candidate = f"{line} {word}" if line else word
            if len(candidate) > width - 1 and line:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _hard_wrap(text: str, width: int) -> list[str]:
    out = [text[: width - 1]]
    rest = text[width - 1 :]
    while rest:
        out.append("   " + rest[: width - 4])
        rest = rest[width - 4 :]
    return out


def _position(script: str, offset: int, length: int) -> list[str]:
    offset = max(0, min(offset, len(script)))
    line_no = script.count("\n", 0, offset) + 1
    line_start = script.rfind("\n", 0, offset) + 1
    line_end = script.find("\n", offset)
    line_end = len(script) if line_end < 0 else line_end
    source = script[line_start:line_end].rstrip("\r")
    col = offset - line_start
    length = max(1, min(length, len(source) - col)) if col < len(source) else 1
    return [f"At line:{line_no} char:{col + 1}", f"+ {source}", "+ " + " " * col + "~" * length]


def format_record(record: ErrorRecord, script: str) -> str:
    """The NormalView text of an error record (CRLF line ends, ends with a one-space line)."""
    lines: list[str] = []
    if record.parser:
        lines += _position(script, record.offset, record.length)
        lines += _wrap(record.message, WIDTH)
    else:
        head = f"{record.command} : {record.message}" if record.command else record.message
        lines += _wrap(head, WIDTH)
        lines += _position(script, record.offset, record.length)
    target = ellipsize(record.target)
    info = (
        f"{record.category}: ({target}:{record.target_type}) [{ellipsize(record.activity)}], "
        f"{ellipsize(record.reason)}"
    )
    lines += _hard_wrap(f"    + CategoryInfo          : {info}", WIDTH)
    lines += _hard_wrap(f"    + FullyQualifiedErrorId : {record.fqid}", WIDTH)
    lines.append(" ")
    return "\r\n".join(lines) + "\r\n"


def in_use_message(path: str | None) -> str:
    """.NET's IOException text for ERROR_SHARING_VIOLATION (with the path when .NET has one)."""
    if path is None:
        return "The process cannot access the file because it is being used by another process."
    return (
        f"The process cannot access the file '{path}' because it is being used by another process."
    )


def disk_error_record(exc: DiskError, path: str) -> ErrorRecord:
    """Map a disk error to PowerShell's record for a path operation (fqid w/o class)."""
    if exc.kind == "full":
        return ErrorRecord(
            "There is not enough space on the disk.", "System.IO.IOException", "NotSpecified",
            reason="IOException",
        )  # fmt: skip
    if exc.kind == "inuse":
        return ErrorRecord(
            in_use_message(exc.path), "GetContentWriterIOError", "WriteError", target=exc.path,
            target_type="String", reason="IOException",
        )  # fmt: skip
    if exc.kind == "pathnotfound":
        return ErrorRecord(
            f"Could not find a part of the path '{path}'.", "GetContentWriterDirectoryNotFoundError",
            "ObjectNotFound", target=path, target_type="String", reason="DirectoryNotFoundException",
        )  # fmt: skip
    if exc.kind in ("isdir", "notdir"):
        return ErrorRecord(
            f"Access to the path '{path}' is denied.", "GetContentWriterUnauthorizedAccessError",
            "PermissionDenied", target=path, target_type="String",
            reason="UnauthorizedAccessException",
        )  # fmt: skip
    if exc.kind == "badpath":
        return ErrorRecord(
            "Illegal characters in path.", "ItemExistsArgumentError", "InvalidArgument",
            target=path, target_type="String", reason="ArgumentException",
        )  # fmt: skip
    return ErrorRecord(
        f"Cannot find path '{path}' because it does not exist.", "PathNotFound", "ObjectNotFound",
        target=path, target_type="String", reason="ItemNotFoundException",
    )  # fmt: skip


class RebootRequested(Exception):
    """``Restart-Computer`` ran: the session ends without an exit status."""
