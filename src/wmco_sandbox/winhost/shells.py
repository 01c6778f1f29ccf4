"""Program dispatch shared by both shells: which code runs for a given program.

``cmd.exe`` and ``powershell.exe`` can start each other (``cmd /c ...`` from PowerShell,
``powershell.exe -Command ...`` from cmd, exactly what a client does when the default shell is
not the one it wants), and both start native programs. This module is the one place that maps
a program path to its implementation, so the two interpreters do not import each other.
"""

from __future__ import annotations

import base64

from .machine import Machine, NativeResult
from .native import run_native
from .winargv import split_command_line

__all__ = ["run_powershell_exe", "run_program"]


def _base(program: str) -> str:
    name = program.replace("/", "\\").rsplit("\\", 1)[-1].lower()
    return name[:-4] if name.endswith(".exe") else name


async def run_program(machine: Machine, program: str, line: str, cwd: str) -> NativeResult:
    """Run a program (full path or base name) with its full command line."""
    base = _base(program)
    if base == "cmd":
        from .cmd import run_cmd_exe

        return await run_cmd_exe(machine, line)
    if base == "powershell":
        return await run_powershell_exe(machine, line)
    return await run_native(machine, base, line, cwd)


async def run_powershell_exe(machine: Machine, line: str) -> NativeResult:
    """``powershell.exe [-NoProfile] [-NonInteractive] [-ExecutionPolicy X] [-Command] ...``."""
    from .powershell import PowerShellSession

    argv = split_command_line(line)[1:]
    i = 0
    command: str | None = None
    while i < len(argv):
        arg = argv[i].lower()
        if arg in ("-noprofile", "-nop", "-noninteractive", "-noni", "-nologo", "-sta", "-mta"):
            i += 1
        elif arg in (
            "-executionpolicy",
            "-ep",
            "-ex",
            "-inputformat",
            "-outputformat",
            "-windowstyle",
        ):
            i += 2
        elif arg in ("-command", "-c"):
            command = " ".join(argv[i + 1 :])
            break
        elif arg in ("-encodedcommand", "-enc", "-e"):
            raw = base64.b64decode(argv[i + 1]) if i + 1 < len(argv) else b""
            command = raw.decode("utf-16-le", "replace")
            break
        elif arg.startswith("-"):
            return NativeResult(
                1, stderr=f"-{argv[i][1:]} : The term is not a valid parameter.\r\n"
            )
        else:
            command = " ".join(argv[i:])
            break
    if command is None:
        return NativeResult(0, "Windows PowerShell\r\nCopyright (C) Microsoft Corporation.\r\n")
    session = PowerShellSession(machine)
    result = await session.run(command)
    return NativeResult(result.code if result.code is not None else 0, result.stdout, result.stderr)
