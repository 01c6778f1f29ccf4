r"""Quoting values for Windows PowerShell 5.1, the default shell of every host we configure.

Every value that goes into a command is a PowerShell *single-quoted* literal: nothing inside one is
expanded (``$``, backticks, ``;``, ``"`` are literal) and the only special character is the quote
itself, written twice. That single rule is the whole defence against injection, so the builder
refuses what it cannot make safe instead of guessing:

- newlines (CR, LF) and NUL: a command is one line on the wire; a value containing them is refused.
- typographic single quotes (U+2018..U+201B): PowerShell's tokenizer treats them as quote
  characters too, so they could end a literal on a real host; they are refused rather than doubled,
  so that every parser that follows the contract (``'`` doubled) reads the same value.

Arguments of native programs (sc.exe, tar) pass through PowerShell 5.1's native argument builder,
which wraps an argument containing whitespace in ``"…"`` without escaping. So, in addition:

- ``"`` is refused (5.1 does not escape it);
- an argument containing whitespace and ending in ``\`` is refused (``\"`` would escape the
  closing quote of the Windows command line);
- an empty argument is refused (5.1 drops it).

Contract: ``docs/windows-surface.md`` ("Quoting rules").
"""

from __future__ import annotations

from typing import Final

_FORBIDDEN: Final = {
    "\n": "a line feed",
    "\r": "a carriage return",
    "\0": "a NUL character",
}

TYPOGRAPHIC_SINGLE_QUOTES: Final = frozenset("\u2018\u2019\u201a\u201b")
"""Characters PowerShell treats as single quotes besides ``'``."""


class UnsafeValueError(ValueError):
    """A value cannot be placed safely into a Windows command; nothing was sent.

    The message names the value's role (``what``) and the offending character class, never the
    value itself: values can be secrets (tokens in a kubeconfig) and end up in logs.

    Attributes:
        what: The role of the refused value, e.g. ``service name``.
        problem: Why it was refused.
    """

    def __init__(self, what: str, problem: str) -> None:
        super().__init__(f"refusing to send {what}: it contains {problem}")
        self.what = what
        self.problem = problem


def check_literal(value: str, *, what: str = "value") -> str:
    """Refuse a value that cannot be a PowerShell single-quoted literal on one line.

    Args:
        value: The value to check.
        what: The role of the value, for the error message.

    Returns:
        The value unchanged.

    Raises:
        UnsafeValueError: The value contains CR, LF, NUL or a typographic single quote.
    """
    for char, description in _FORBIDDEN.items():
        if char in value:
            raise UnsafeValueError(what, description)
    if any(char in TYPOGRAPHIC_SINGLE_QUOTES for char in value):
        raise UnsafeValueError(what, "a typographic single quote (U+2018..U+201B)")
    return value


def ps_quote(value: str, *, what: str = "value") -> str:
    """Return ``value`` as a PowerShell single-quoted literal (``'`` doubled).

    Args:
        value: Any text without CR, LF, NUL or typographic single quotes.
        what: The role of the value, for the error message.

    Returns:
        ``'…'`` that PowerShell reads back as exactly ``value``.

    Raises:
        UnsafeValueError: The value cannot be quoted safely.
    """
    check_literal(value, what=what)
    return "'" + value.replace("'", "''") + "'"


def native_arg(value: str, *, what: str = "argument") -> str:
    """Return ``value`` quoted as one argument for a native program called from PowerShell 5.1.

    Args:
        value: The argument.
        what: The role of the value, for the error message.

    Returns:
        The single-quoted literal; PowerShell passes it as one argv element.

    Raises:
        UnsafeValueError: The value is empty, contains ``"``, or contains whitespace and ends in
            a backslash, or fails :func:`ps_quote`'s rules.
    """
    check_literal(value, what=what)
    if not value:
        raise UnsafeValueError(what, "nothing (PowerShell 5.1 drops empty native arguments)")
    if '"' in value:
        raise UnsafeValueError(what, "a double quote (PowerShell 5.1 does not escape it)")
    if value.endswith("\\") and any(char.isspace() for char in value):
        raise UnsafeValueError(what, "whitespace and a trailing backslash")
    return ps_quote(value, what=what)


def join_statements(*statements: str) -> str:
    """Join PowerShell statements with ``; `` (the contract's separator)."""
    return "; ".join(statements)
