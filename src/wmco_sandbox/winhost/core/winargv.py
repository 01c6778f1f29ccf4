"""Windows command-line splitting and joining.

Windows passes a program ONE command-line string; each program splits it itself, almost always
with the Microsoft C runtime rules (``CommandLineToArgvW``). Windows PowerShell 5.1 builds that
string from its own argument values with its own (lossy) quoting. The host reproduces both steps,
so that what a native program such as ``sc.exe`` sees is exactly what a real one would see,
including PowerShell 5.1's mangling of embedded double quotes.
"""

from __future__ import annotations

__all__ = ["join_ps51_native", "split_command_line"]


def split_command_line(line: str, *, first_is_program: bool = True) -> list[str]:
    """Split a command line like ``CommandLineToArgvW`` (MSVCRT rules, post-2008).

    Args:
        line: The command line.
        first_is_program: Apply the special rule for argv[0] (no backslash escapes; quoted up
            to the next double quote).

    Returns:
        The argument vector.
    """
    args: list[str] = []
    i, n = 0, len(line)
    while i < n and line[i] in " \t":
        i += 1
    if first_is_program and i < n:
        if line[i] == '"':
            end = line.find('"', i + 1)
            end = n if end < 0 else end
            args.append(line[i + 1 : end])
            i = end + 1
        else:
            start = i
            while i < n and line[i] not in " \t":
                i += 1
            args.append(line[start:i])
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return args
        buf: list[str] = []
        in_quotes = False
        while i < n:
            c = line[i]
            if c == "\\":
                start = i
                while i < n and line[i] == "\\":
                    i += 1
                count = i - start
                if i < n and line[i] == '"':
                    buf.append("\\" * (count // 2))
                    if count % 2:
                        buf.append('"')
                        i += 1
                    continue
                buf.append("\\" * count)
                continue
            if c == '"':
                if in_quotes and i + 1 < n and line[i + 1] == '"':
                    buf.append('"')
                    i += 2
                    continue
                in_quotes = not in_quotes
                i += 1
                continue
            if c in " \t" and not in_quotes:
                break
            buf.append(c)
            i += 1
        args.append("".join(buf))


def _needs_quotes(arg: str) -> bool:
    """PowerShell 5.1's NeedQuotes: whitespace outside of (balanced) double quotes."""
    quoted = False
    for c in arg:
        if c == '"':
            quoted = not quoted
        elif c in " \t" and not quoted:
            return True
    return False


def join_ps51_native(program: str, args: list[str]) -> str:
    """Build the command line Windows PowerShell 5.1 gives a native program.

    Arguments containing whitespace (outside double quotes) are wrapped in ``"..."``; embedded
    double quotes are NOT escaped and empty strings are dropped, both as 5.1 does.

    Args:
        program: The program path (argv[0]).
        args: The argument values after PowerShell's own parsing.

    Returns:
        The command line string.
    """
    parts = [f'"{program}"' if _needs_quotes(program) else program]
    for arg in args:
        if arg == "":
            continue
        parts.append(f'"{arg}"' if _needs_quotes(arg) else arg)
    return " ".join(parts)
