"""Quoting of values for PowerShell 5.1: round-trips, refusals, and no way out of a literal.

The reference parser below follows PowerShell's tokenizer for single-quoted strings, including the
typographic single quotes it also treats as quote characters.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from wmco.windows import commands, quoting

QUOTE_CHARS = frozenset("'\u2018\u2019\u201a\u201b")


def parse_single_quoted(text: str, start: int = 0) -> tuple[str, int]:
    """Read one PowerShell single-quoted literal at ``start``; return (value, index after it)."""
    assert text[start] in QUOTE_CHARS, "a literal starts with a quote"
    value: list[str] = []
    index = start + 1
    while True:
        if index >= len(text):
            raise ValueError("unterminated literal")
        char = text[index]
        if char in QUOTE_CHARS:
            if index + 1 < len(text) and text[index + 1] in QUOTE_CHARS:
                value.append(text[index + 1])
                index += 2
                continue
            return "".join(value), index + 1
        value.append(char)
        index += 1


SAFE_TEXT = st.text(
    alphabet=st.characters(
        blacklist_characters="\n\r\0\u2018\u2019\u201a\u201b", blacklist_categories=("Cs",)
    )
)


@given(SAFE_TEXT)
@example("")
@example("'")
@example("''")
@example("a'; Remove-Item C:\\ -Recurse; '")
@example('$(Get-Process) `whoami` $env:PATH " ;')
def test_ps_quote_round_trips(value: str) -> None:
    quoted = quoting.ps_quote(value)
    parsed, end = parse_single_quoted(quoted)
    assert parsed == value
    assert end == len(quoted)


@given(SAFE_TEXT.filter(lambda v: v and '"' not in v and not v.endswith("\\")))
def test_native_arg_round_trips(value: str) -> None:
    quoted = quoting.native_arg(value)
    parsed, end = parse_single_quoted(quoted)
    assert (parsed, end) == (value, len(quoted))


@given(SAFE_TEXT)
def test_a_path_never_escapes_its_literal(suffix: str) -> None:
    path = "C:\\k\\" + suffix
    command = commands.make_directories([path])
    prefix = "New-Item -ItemType Directory -Force -Path "
    suffix = " | Out-Null"
    assert command.endswith(suffix)
    command = command[: -len(suffix)]
    assert command.startswith(prefix)
    parsed, end = parse_single_quoted(command, len(prefix))
    assert parsed == path
    assert end == len(command), "nothing may follow the literal"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a\nb", "a line feed"),
        ("a\rb", "a carriage return"),
        ("a\0b", "a NUL character"),
        ("it\u2019s", "typographic single quote"),
        ("\u2018x", "typographic single quote"),
    ],
)
def test_unsafe_values_are_refused_without_echoing_them(value: str, problem: str) -> None:
    with pytest.raises(quoting.UnsafeValueError) as info:
        quoting.ps_quote(value, what="file content")
    assert problem in str(info.value)
    assert "file content" in str(info.value)
    assert value not in str(info.value)


@given(st.text(), st.sampled_from("\n\r\0"), st.text())
def test_any_value_with_newline_or_nul_is_refused(before: str, bad: str, after: str) -> None:
    with pytest.raises(quoting.UnsafeValueError):
        quoting.ps_quote(before + bad + after)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "nothing"),
        ('C:\\k\\a "b"', "double quote"),
        ("C:\\Program Files\\x\\", "trailing backslash"),
    ],
)
def test_native_args_refuse_what_powershell_51_mangles(value: str, problem: str) -> None:
    with pytest.raises(quoting.UnsafeValueError, match=problem):
        quoting.native_arg(value)


def test_native_arg_allows_a_trailing_backslash_without_whitespace() -> None:
    assert quoting.native_arg("C:\\k\\") == "'C:\\k\\'"


def test_single_quotes_are_doubled() -> None:
    assert quoting.ps_quote("it's") == "'it''s'"
    assert quoting.ps_quote("$x; `y`") == "'$x; `y`'"


def test_statements_are_joined_with_semicolon_space() -> None:
    assert quoting.join_statements("a", "b", "c") == "a; b; c"
