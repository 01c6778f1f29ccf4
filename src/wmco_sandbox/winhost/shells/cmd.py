"""cmd.exe, as sshd runs it when no DefaultShell is set: ``cmd.exe /c "<command>"``.

Supports what a client sends before PowerShell is the default shell: ``if [not] exist X cmd``,
``mkdir``/``md`` (with parents; an existing directory is an error, as in cmd), ``rmdir /s /q``,
``echo``, ``exit``, ``&``/``&&``/``||`` chains, and external programs (``sc.exe``, ``tar``,
``hostname``, ``ipconfig``, ``icacls``, ``powershell.exe``) that receive the rest of the line
as their command line. ``sc`` means sc.exe here (in PowerShell it is Set-Content). Anything else
gets cmd's "is not recognized as an internal or external command" text and status 1.
"""

from __future__ import annotations

import re

from wmco_sandbox.winhost.core.disk import DirNode, DiskError
from wmco_sandbox.winhost.core.machine import Machine, NativeResult
from wmco_sandbox.winhost.shells.dispatch import run_program

__all__ = ["run_cmd", "run_cmd_exe"]

_PATH_DIRS = (
    "C:\\Windows\\System32",
    "C:\\Windows",
    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
)


def _split_chain(line: str) -> list[tuple[str, str]]:
    """Split on ``&``, ``&&``, ``||`` outside double quotes -> [(operator-before, command)]."""
    out: list[tuple[str, str]] = []
    buf: list[str] = []
    op = ""
    quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if c == '"':
            quoted = not quoted
        elif c == "^" and not quoted and i + 1 < len(line):
            buf.append(line[i + 1])
            i += 2
            continue
        elif not quoted and c in "&|":
            nxt = line[i + 1] if i + 1 < len(line) else ""
            out.append((op, "".join(buf)))
            buf = []
            if nxt == c:
                op = c * 2
                i += 2
                continue
            op = c
            i += 1
            continue
        buf.append(c)
        i += 1
    out.append((op, "".join(buf)))
    return out


def _tokens(text: str) -> list[str]:
    """Cmd's own tokens for built-ins: whitespace separated, quotes group (and are kept)."""
    return re.findall(r'(?:"[^"]*"|[^\s"])+', text)


def _unquote(token: str) -> str:
    return token.replace('"', "")


def _not_recognized(name: str) -> NativeResult:
    return NativeResult(
        1,
        stderr=f"'{name}' is not recognized as an internal or external command,\r\n"
        "operable program or batch file.\r\n",
    )


async def _builtin(machine: Machine, command: str) -> NativeResult:
    text = command.strip(" \t")
    if not text:
        return NativeResult(0)
    tokens = _tokens(text)
    name = _unquote(tokens[0])
    low = name.lower()
    disk = machine.disk
    if low == "if":
        m = re.match(
            r'if\s+(not\s+)?exist\s+("[^"]*"|\S+)\s+(.*)$', text, re.IGNORECASE | re.DOTALL
        )
        if m is None:
            return NativeResult(255, stderr="The syntax of the command is incorrect.\r\n")
        exists = disk.get(_unquote(m.group(2))) is not None
        if exists != bool(m.group(1)):
            return await _builtin(machine, m.group(3))
        return NativeResult(0)
    if low in ("mkdir", "md"):
        if len(tokens) < 2:
            return NativeResult(1, stderr="The syntax of the command is incorrect.\r\n")
        errors: list[str] = []
        for arg in tokens[1:]:
            path = _unquote(arg)
            shown = path.rstrip("\\") or path
            if disk.get(path) is not None:
                errors.append(f"A subdirectory or file {shown} already exists.\r\n")
                if len(tokens) > 2:
                    errors.append(f"Error occurred while processing: {shown}.\r\n")
                continue
            try:
                disk.mkdir(path)
            except DiskError:
                errors.append(
                    "The filename, directory name, or volume label syntax is incorrect.\r\n"
                )
        return NativeResult(1 if errors else 0, stderr="".join(errors))
    if low in ("rmdir", "rd"):
        args = [_unquote(t) for t in tokens[1:]]
        recursive = any(a.lower() == "/s" for a in args)
        paths = [a for a in args if not a.startswith("/")]
        for path in paths:
            node = disk.get(path)
            if not isinstance(node, DirNode):
                return NativeResult(2, stderr="The system cannot find the file specified.\r\n")
            try:
                disk.remove(path, recursive=recursive)
            except DiskError:
                return NativeResult(145, stderr="The directory is not empty.\r\n")
        return NativeResult(0)
    if low == "echo":
        return NativeResult(0, text[4:].lstrip(" ") + "\r\n")
    if low == "exit":
        args = [t for t in tokens[1:] if t.lower() != "/b"]
        code = int(args[0]) if args and re.fullmatch(r"-?\d+", args[0]) else 0
        return NativeResult(code & 0xFFFFFFFF)
    program = _resolve(machine, name)
    if program is None:
        return _not_recognized(name)
    rest = text[len(tokens[0]) :]
    return await run_program(machine, program, program + rest, "C:\\Users\\Administrator")


def _resolve(machine: Machine, name: str) -> str | None:
    disk = machine.disk
    if "\\" in name or "/" in name or ":" in name:
        candidates = [name, name + ".exe"]
    else:
        candidates = [
            f"{d}\\{name}{ext}" for d in _PATH_DIRS for ext in ("", ".exe", ".com", ".bat")
        ]
    for cand in candidates:
        node = disk.get(cand)
        if node is not None and not isinstance(node, DirNode) and "." in cand.rsplit("\\", 1)[-1]:
            return disk.format(disk.canonical(disk.parse(cand)))
    return None


async def run_cmd(machine: Machine, command: str) -> NativeResult:
    """Run ``command`` as ``cmd.exe /c "<command>"`` does; exit = last ERRORLEVEL."""
    code = 0
    out: list[str] = []
    err: list[str] = []
    for op, part in _split_chain(command):
        if (op == "&&" and code != 0) or (op == "||" and code == 0):
            continue
        if op == "|":
            err.append("The pipe operator is not supported by this simulated host.\r\n")
            return NativeResult(1, "".join(out), "".join(err))
        result = await _builtin(machine, part)
        code = result.code
        out.append(result.stdout)
        err.append(result.stderr)
    return NativeResult(code, "".join(out), "".join(err))


async def run_cmd_exe(machine: Machine, line: str) -> NativeResult:
    """``cmd.exe /c <command>`` (or ``/k``/``/s``/``/d`` switches) started from another shell."""
    m = re.match(r'\s*("[^"]*"|\S+)\s*((?:/[a-zA-Z]\s*)*)', line)
    if m is None:
        return NativeResult(0)
    switches = m.group(2).lower().replace(" ", "")
    rest = line[m.end() :]
    if "/c" not in switches and "/k" not in switches:
        return NativeResult(0, "Microsoft Windows [Version 10.0]\r\n")
    stripped = rest.lstrip(" ")
    if stripped.startswith('"'):
        last = stripped.rfind('"')
        rest = stripped[1:last] + stripped[last + 1 :] if last > 0 else stripped[1:]
    return await run_cmd(machine, rest)
