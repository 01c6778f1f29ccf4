"""The table of cmdlets the simulated PowerShell knows, and the helpers cmdlet modules share.

Cmdlet modules (``powershell/cmdlets/*``) add their implementations with :func:`register`; the
session looks commands up in :data:`CMDLETS` and :data:`ALIASES` after importing
:mod:`wmco_sandbox.winhost.powershell.cmdlets`, which imports every cmdlet module. The table
lives here, below both, so that neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable

from wmco_sandbox.winhost.powershell.binding import CmdletImpl, CmdletSpec, Invocation, P
from wmco_sandbox.winhost.powershell.errors import CMDLET_CLASSES
from wmco_sandbox.winhost.powershell.values import to_str

__all__ = ["ALIASES", "CMDLETS", "ENCODINGS", "fq", "register", "strs"]

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


def register(
    name: str, params: list[P], *, common: bool = True
) -> Callable[[CmdletImpl], CmdletImpl]:
    """Decorator: add a cmdlet implementation to :data:`CMDLETS`."""

    def wrap(fn: CmdletImpl) -> CmdletImpl:
        CMDLETS[name.lower()] = CmdletSpec(name, params, fn, common)
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
