"""Command-line flags of the node agents, parsed the way their Go flag libraries do.

kube-proxy uses pflag (``--name=value``, ``--name value``, booleans alone); hybrid-overlay-node
uses urfave/cli, which accepts the same spellings. An undeclared flag is refused with the
library's own words, so a service created with a misspelt flag fails like the real binary.
"""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["FlagError", "parse_flags"]


class FlagError(Exception):
    """The command line names a flag the program does not define."""


def parse_flags(
    argv: list[str], *, known: Collection[str], booleans: Collection[str], program: str
) -> dict[str, str]:
    """Parse ``argv`` (program first) into flag name -> value.

    Args:
        argv: The program's argument vector, its path first.
        known: Flags the program defines (without dashes).
        booleans: Which of them are booleans (``--flag`` alone means ``true``).
        program: The program name for error texts.

    Returns:
        Flag values; a repeated flag keeps its last value.

    Raises:
        FlagError: An unknown flag, a missing value, or a stray positional argument.
    """
    flags: dict[str, str] = {}
    args = argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            raise FlagError(f'"{program}" does not take any arguments, got ["{arg}"]')
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in known:
            raise FlagError(f"unknown flag: --{name}")
        if not eq:
            if name in booleans:
                value = "true"
            elif i < len(args):
                value = args[i]
                i += 1
            else:
                raise FlagError(f"flag needs an argument: --{name}")
        flags[name] = value
    return flags
