"""Program dispatch shared by both shells: which code runs for a given program.

``cmd.exe`` and ``powershell.exe`` can start each other (``cmd /c ...`` from PowerShell,
``powershell.exe -Command ...`` from cmd, exactly what a client does when the default shell is
not the one it wants), and both start native programs. This module is the one place that maps
a program path to its implementation. The two interpreters reach each other through
``Machine.shells`` (``cmd`` and ``powershell`` entries the host fills in when it is built), so
neither imports the other and this module imports neither.
"""

from __future__ import annotations

from wmco_sandbox.winhost.core.machine import Machine, NativeResult
from wmco_sandbox.winhost.shells.native import run_native

__all__ = ["run_program"]


def _base(program: str) -> str:
    name = program.replace("/", "\\").rsplit("\\", 1)[-1].lower()
    return name[:-4] if name.endswith(".exe") else name


async def run_program(machine: Machine, program: str, line: str, cwd: str) -> NativeResult:
    """Run a program (full path or base name) with its full command line."""
    base = _base(program)
    shell = machine.shells.get(base)
    if shell is not None:
        return await shell(machine, line)
    return await run_native(machine, base, line, cwd)
