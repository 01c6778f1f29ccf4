"""One exec for a whole step: a script of stages, each opened by a marker line (issue 12 §3).

Every exec starts a new ``powershell.exe`` on the host (about a quarter of a second for Windows
PowerShell 5.1) and costs a network round trip, so the configure flow sends each step's commands
as ONE script. The script is still made only of the forms of :mod:`wmco.windows.commands` (every
value quoted by :mod:`wmco.windows.quoting`), joined with the contract's separator:

* ``$ErrorActionPreference = 'Stop'`` first, so a failing cmdlet ends the script with exit 1
  and its error record on stderr, before anything after it runs;
* each :class:`Stage` opens with a ``wmco-stage <n>`` line, so the answer says how far it got;
* a stage of a native program (``sc.exe``, ``tar.exe``) lists the exit codes it accepts (the
  "already so" answers, e.g. 1073 for a service that exists); any other ``$LASTEXITCODE`` ends
  the script with that status;
* a last ``wmco-stage end`` line, so a complete answer is told from one cut short.

:func:`failure` turns an answer into the message of the stage that failed (its label, the exit
status and the first line of error text), or ``None`` when every stage ran. The stages of one
script are idempotent as a whole: a script whose connection dropped is sent again from the top.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

from wmco.windows import commands, quoting

STAGE_MARK: Final = "wmco-stage"
"""First word of the marker line that opens each stage (``wmco-stage <n>``, ``wmco-stage end``)."""

MISMATCH_EXIT: Final = 3
"""The exit status of a stage that found a file with another digest (:func:`expect_hash`)."""

MISMATCH_MARK: Final = "wmco-differs"
"""First word of the line naming the file whose digest differs."""


@dataclasses.dataclass(frozen=True, slots=True)
class Stage:
    """Statements that run together, with what they do (for messages).

    Attributes:
        label: What the stage does, e.g. ``create of service kubelet``.
        statements: Command forms of :mod:`wmco.windows.commands`.
        ok: For a native program: the exit codes that mean success or "already so"; ``None``
            for cmdlets (a failure ends the script through ``$ErrorActionPreference``).
    """

    label: str
    statements: tuple[str, ...]
    ok: tuple[int, ...] | None = None


def _mark(name: str) -> str:
    return f"Write-Output {quoting.ps_quote(f'{STAGE_MARK} {name}')}"


def script(stages: Sequence[Stage]) -> str:
    """The one command that runs every stage in order (see the module docstring).

    Raises:
        ValueError: No stage.
    """
    if not stages:
        raise ValueError("a script needs at least one stage")
    statements = ["$ErrorActionPreference = 'Stop'"]
    for index, stage in enumerate(stages):
        statements.append(_mark(str(index)))
        statements += stage.statements
        if stage.ok is not None:
            codes = ", ".join(str(int(code)) for code in stage.ok)
            statements.append(
                f"if (@({codes}) -notcontains $LASTEXITCODE) {{ exit $LASTEXITCODE }}"
            )
    statements += [_mark("end"), "exit 0"]
    return quoting.join_statements(*statements)


def expect_hash(path: str, sha256: str) -> str:
    """A statement ending the script with :data:`MISMATCH_EXIT` when ``path`` has another digest.

    A missing file is ``Get-FileHash``'s own ``Cannot find path`` error (exit 1).

    Raises:
        quoting.UnsafeValueError: The path is unsafe or the digest is not hex.
    """
    if len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256):
        raise quoting.UnsafeValueError("SHA-256", "something other than 64 hex digits")
    quoted = quoting.ps_quote(commands.check_windows_path(path), what="path")
    mark = quoting.ps_quote(f"{MISMATCH_MARK} {path}", what="path")
    return (
        f"if ((Get-FileHash -LiteralPath {quoted} -Algorithm SHA256).Hash -ne "
        f"{quoting.ps_quote(sha256.upper())}) {{ Write-Output {mark}; exit {MISMATCH_EXIT} }}"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """How far a script got.

    Attributes:
        outputs: Standard output of each stage that started, by index (markers removed).
        complete: Whether the ``end`` marker came.
    """

    outputs: dict[int, str]
    complete: bool

    @property
    def last_started(self) -> int | None:
        """The index of the last stage that started (``None``: none did)."""
        return max(self.outputs) if self.outputs else None


def read(stdout: str) -> Answer:
    """Split a script's standard output by its stage markers."""
    outputs: dict[int, list[str]] = {}
    current: list[str] | None = None
    complete = False
    prefix = STAGE_MARK + " "
    for line in stdout.replace("\r", "").split("\n"):
        if line.startswith(prefix):
            name = line[len(prefix) :].strip()
            if name == "end":
                complete, current = True, None
            elif name.isdigit():
                current = outputs.setdefault(int(name), [])
            continue
        if current is not None:
            current.append(line)
    return Answer({index: "\n".join(lines) for index, lines in outputs.items()}, complete)


def failure(
    stages: Sequence[Stage], exit_status: int | None, stdout: str, stderr: str
) -> str | None:
    """The message of the stage that failed, or ``None`` when the script ran to its end.

    Args:
        stages: The stages the script was made of.
        exit_status: Its exit status.
        stdout: Its standard output.
        stderr: Its error text (the first line names the cause: a cmdlet's error record, or
            ``tar.exe: <member>: <reason>``).
    """
    answer = read(stdout)
    if exit_status == 0 and answer.complete:
        return None
    index = answer.last_started
    label = stages[index].label if index is not None and index < len(stages) else "the script"
    lines = [line for line in stderr.replace("\r", "").split("\n") if line.strip()]
    output = answer.outputs.get(index, "") if index is not None else stdout
    mismatch = [line for line in output.split("\n") if line.startswith(MISMATCH_MARK + " ")]
    if exit_status == MISMATCH_EXIT and mismatch:
        path = mismatch[-1][len(MISMATCH_MARK) + 1 :]
        return f"{label}: {path} has another SHA-256 than the one sent"
    if lines:
        detail = lines[0]
    else:
        tail = [line for line in output.split("\n") if line.strip()]
        detail = tail[-1] if tail else "no error text"
    if exit_status == 0:
        return f"{label}: the answer was cut short ({detail[:300]})"
    return f"{label} failed with exit status {exit_status}: {detail[:300]}"
