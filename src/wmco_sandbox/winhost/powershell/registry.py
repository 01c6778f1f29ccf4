"""The table of cmdlets the simulated PowerShell knows, and the helpers cmdlet modules share.

Cmdlet modules (``powershell/cmdlets/*``) add their implementations with :func:`register`; the
session looks commands up in :data:`CMDLETS` and :data:`ALIASES` after importing
:mod:`wmco_sandbox.winhost.powershell.cmdlets`, which imports every cmdlet module. The table
lives here, below both, so that neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wmco_sandbox.winhost.powershell.binding import CmdletImpl, CmdletSpec, Invocation, P
from wmco_sandbox.winhost.powershell.errors import CMDLET_CLASSES, ErrorRecord, PSRuntimeError
from wmco_sandbox.winhost.powershell.syntax import Command
from wmco_sandbox.winhost.powershell.values import to_str

__all__ = [
    "ALIASES", "CMDLETS", "ENCODINGS", "MODULE_FUNCTIONS", "command_not_found", "fq",
    "module_function", "register", "register_function", "strs",
]  # fmt: skip

CMDLETS: dict[str, CmdletSpec] = {}
ALIASES = {
    "sc": "set-content", "gc": "get-content", "cat": "get-content", "type": "get-content",
    "mkdir": "new-item", "md": "new-item", "ni": "new-item", "rm": "remove-item",
    "del": "remove-item", "erase": "remove-item", "rd": "remove-item", "rmdir": "remove-item",
    "ri": "remove-item", "ps": "get-process", "gps": "get-process", "where": "where-object",
    "?": "where-object", "echo": "write-output", "write": "write-output", "help": "get-help",
    "iex": "invoke-expression", "gsv": "get-service", "sasv": "start-service",
    "spsv": "stop-service", "gp": "get-itemproperty", "dir": "get-childitem",
    "ls": "get-childitem", "gci": "get-childitem",
}  # fmt: skip
ENCODINGS = (
    "Unknown", "String", "Unicode", "Byte", "BigEndianUnicode", "UTF8", "UTF7", "UTF32", "Ascii",
    "Default", "Oem", "BigEndianUTF32",
)  # fmt: skip


MODULE_FUNCTIONS: dict[str, CmdletSpec] = {}
"""Functions of script modules the host simulates, by lower-case name. They become callable in a
session only after ``Import-Module`` of a file that declares them (``session.imported``)."""


def register(
    name: str,
    params: list[P],
    *,
    common: bool = True,
    available: Callable[[Any], bool] | None = None,
) -> Callable[[CmdletImpl], CmdletImpl]:
    """Decorator: add a cmdlet implementation to :data:`CMDLETS`.

    Args:
        name: The cmdlet name.
        params: Its parameters.
        common: Whether the common parameters apply.
        available: Given the machine, whether the cmdlet exists there (None = always).
    """

    def wrap(fn: CmdletImpl) -> CmdletImpl:
        CMDLETS[name.lower()] = CmdletSpec(name, params, fn, common, available)
        return fn

    return wrap


def register_function(name: str, params: list[P]) -> Callable[[CmdletImpl], CmdletImpl]:
    """Decorator: add a script-module function to :data:`MODULE_FUNCTIONS`."""

    def wrap(fn: CmdletImpl) -> CmdletImpl:
        MODULE_FUNCTIONS[name.lower()] = CmdletSpec(name, params, fn, True)
        return fn

    return wrap


def strs(inv: Invocation, name: str, default: list[str] | None = None) -> list[str]:
    """A bound string-array parameter as a list of str."""
    value = inv.bound.get(name)
    if value is None:
        return list(default or [])
    return [to_str(v) for v in value] if isinstance(value, list) else [to_str(value)]


def fq(inv: Invocation, error_id: str) -> str:
    """``<error id>,<cmdlet class>``: a FullyQualifiedErrorId as PowerShell forms it."""
    return f"{error_id},{CMDLET_CLASSES.get(inv.name, inv.name)}"


def command_not_found(node: Command) -> PSRuntimeError:
    """PowerShell's CommandNotFoundException for the command of ``node``."""
    record = ErrorRecord(
        f"The term '{node.name}' is not recognized as the name of a cmdlet, function, "
        "script file, or operable program. Check the spelling of the name, or if a path "
        "was included, verify that the path is correct and try again.",
        "CommandNotFoundException", "ObjectNotFound", target=node.name,
        target_type="String", reason="CommandNotFoundException", command=node.name,
        offset=node.name_start, length=node.name_end - node.name_start,
    )  # fmt: skip
    return PSRuntimeError(record)


def module_function(key: str, node: Command, imported: dict[str, tuple[str, str]]) -> CmdletSpec:
    """The simulation of an imported module function, or a clear error when there is none.

    Args:
        key: Lower-case command name.
        node: The command being invoked (for the error position).
        imported: The session's imported functions: name -> (declared name, module path).

    Raises:
        PSRuntimeError: The module declares the function but the host does not simulate it.
    """
    spec = MODULE_FUNCTIONS.get(key)
    if spec is not None:
        return spec
    shown, module = imported[key]
    record = ErrorRecord(
        f"simulated host: the function '{shown}' of module '{module}' is not simulated (only "
        "the functions listed in docs/windows-surface.md are).", "FunctionNotSimulated",
        "NotImplemented", target=shown, target_type="String", reason="NotSupportedException",
        command=shown, offset=node.name_start, length=node.name_end - node.name_start,
    )  # fmt: skip
    raise PSRuntimeError(record)
