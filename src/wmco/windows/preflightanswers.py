r"""Parsers of the answers to the read-only queries of ``wmco preflight`` and the host-log tools.

The queries are built in :mod:`wmco.windows.commands` (section "Read-only queries"); the forms
and the answers a real host gives are in ``docs/windows-surface.md``. As in
:mod:`wmco.windows.answers`, parsers return typed records and raise
:class:`answers.CommandOutputError` on output of another shape; they match on field names, JSON
keys and codes, and on English principal names only where Windows offers nothing else (icacls
prints localised account names; the well-known SIDs are accepted too).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from typing import Any, Final

from wmco.windows import answers

CMD_NOT_RECOGNIZED: Final = "is not recognized as an internal or external command"
"""cmd.exe's message for a command it does not know: the default shell is cmd, not PowerShell."""


# --- Default shell ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class DefaultShell:
    """What the ``DefaultShell`` query found.

    Attributes:
        powershell: The command ran in PowerShell (so sshd's default shell is a PowerShell).
        value: The registry value (empty when unset, which means cmd.exe).
    """

    powershell: bool
    value: str


def parse_default_shell(exit_status: int | None, stdout: str, stderr: str) -> DefaultShell:
    """Classify the answer of ``toolcommands.default_shell``.

    Raises:
        answers.CommandOutputError: Neither a PowerShell answer nor cmd.exe's refusal.
    """
    if CMD_NOT_RECOGNIZED in stderr or CMD_NOT_RECOGNIZED in stdout:
        return DefaultShell(powershell=False, value="")
    if exit_status == 0:
        value = stdout.strip()
        return DefaultShell(powershell="powershell" in value.lower(), value=value)
    raise answers.CommandOutputError("default shell", f"exit {exit_status}", stderr or stdout)


# --- icacls ----------------------------------------------------------------------------------

_SYSTEM: Final = frozenset({"nt authority\\system", "*s-1-5-18", "s-1-5-18"})
_ADMINISTRATORS: Final = frozenset({"builtin\\administrators", "*s-1-5-32-544", "s-1-5-32-544"})


@dataclasses.dataclass(frozen=True, slots=True)
class AccessEntry:
    r"""One icacls entry: ``NT AUTHORITY\SYSTEM:(I)(F)``.

    Attributes:
        principal: The account as icacls prints it.
        flags: The parenthesised flags in order, e.g. ``("I", "F")``.
    """

    principal: str

    flags: tuple[str, ...]

    @property
    def inherited(self) -> bool:
        """The entry comes from the parent folder."""
        return "I" in self.flags

    @property
    def full_control(self) -> bool:
        """The entry grants Full control."""
        return "F" in self.flags


_ENTRY: Final = re.compile(r"(?P<principal>.+?):(?P<flags>(?:\([A-Z,]+\))+)$")


def parse_icacls(output: str, path: str) -> tuple[AccessEntry, ...]:
    """Parse ``icacls <path>``: the entries listed before the blank line and the summary.

    Raises:
        answers.CommandOutputError: No entry, or a line of another shape.
    """
    lines = output.replace("\r\n", "\n").split("\n")
    if not lines or not lines[0].lower().startswith(path.lower()):
        raise answers.CommandOutputError("icacls", "does not start with the path", output)
    texts = [lines[0][len(path) :].strip()]
    for line in lines[1:]:
        if not line.strip():
            break
        texts.append(line.strip())
    entries = []
    for text in texts:
        match = _ENTRY.fullmatch(text)
        if match is None:
            raise answers.CommandOutputError("icacls", "an entry of unknown shape", output)
        flags = tuple(re.findall(r"\(([A-Z,]+)\)", match["flags"]))
        entries.append(AccessEntry(principal=match["principal"], flags=flags))
    if not entries:
        raise answers.CommandOutputError("icacls", "no entry", output)
    return tuple(entries)


def key_file_acl_problems(entries: tuple[AccessEntry, ...]) -> list[str]:
    """What sshd's permission check on ``administrators_authorized_keys`` would refuse.

    sshd accepts the file only when every allow entry is SYSTEM's or Administrators' (and SYSTEM
    has Full control); an inherited entry such as ``Authenticated Users`` makes it skip the file.

    Returns:
        Human-readable problems; empty when the ACL is acceptable.
    """
    problems = []
    others = [e.principal for e in entries if e.principal.lower() not in _SYSTEM | _ADMINISTRATORS]
    if others:
        problems.append("other principals have access: " + ", ".join(others))
    if not any(e.principal.lower() in _SYSTEM and e.full_control for e in entries):
        problems.append("SYSTEM has no Full control entry")
    if any(e.inherited for e in entries):
        problems.append("inherited entries are present (inheritance not removed)")
    return problems


# --- Numbers, clock --------------------------------------------------------------------------


def parse_byte_count(output: str, kind: str = "byte count") -> int:
    """Parse one non-negative integer line (``Get-PSDrive`` ``Free``/``Used``).

    Raises:
        answers.CommandOutputError: Not one number.
    """
    values = [line.strip() for line in output.splitlines() if line.strip()]
    if len(values) != 1 or not values[0].isdigit():
        raise answers.CommandOutputError(kind, "expected one number", output)
    return int(values[0])


_ROUND_TRIP: Final = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d{1,7}))?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?"
)


def parse_round_trip_time(output: str) -> dt.datetime:
    """Parse ``Get-Date -Format 'o'`` (``2026-12-01T18:00:00.1234567+01:00``), offset-aware.

    A value without an offset (a DateTime of unspecified kind) cannot be compared with another
    clock and is refused.

    Raises:
        answers.CommandOutputError: Not a round-trip timestamp with an offset.
    """
    values = [line.strip() for line in output.splitlines() if line.strip()]
    match = _ROUND_TRIP.fullmatch(values[0]) if len(values) == 1 else None
    if match is None or match["zone"] is None:
        raise answers.CommandOutputError("local time", "expected a round-trip time", output)
    micro = int((match["frac"] or "0").ljust(7, "0")[:6])
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    return dt.datetime.fromisoformat(f"{match['base']}{zone}").replace(microsecond=micro)


# --- Firewall, DNS (JSON arrays) -------------------------------------------------------------


def _json_array(output: str, kind: str) -> list[dict[str, Any]]:
    text = output.strip()
    try:
        value = json.loads(text) if text else []
    except json.JSONDecodeError:
        raise answers.CommandOutputError(kind, "not JSON", output) from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise answers.CommandOutputError(kind, "not a JSON array of objects", output)
    return value


def _ports(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value is not None else []


def port_allowed(output: str, port: int) -> bool:
    """Whether a TCP port filter of ``toolcommands.inbound_port_filters`` admits ``port``.

    ``LocalPort`` is ``Any``, a number, a range ``a-b``, or an array of those; ``Protocol`` is
    ``TCP`` or ``Any``.

    Raises:
        answers.CommandOutputError: Not a JSON array of port filters.
    """
    for item in _json_array(output, "firewall port filters"):
        if str(item.get("Protocol", "")).upper() not in ("TCP", "ANY"):
            continue
        for spec in _ports(item.get("LocalPort")):
            spec = spec.strip()
            if spec.lower() == "any":
                return True
            low, sep, high = spec.partition("-")
            bounded = low.isdigit() and (high.isdigit() if sep else True)
            if bounded and int(low) <= port <= int(high if sep else low):
                return True
    return False


def parse_a_records(output: str) -> list[str]:
    """The IPv4 addresses of ``toolcommands.resolve_name``'s answer (``Type`` 1; CNAMEs skipped)."""
    return [
        str(item["IPAddress"])
        for item in _json_array(output, "DNS A records")
        if item.get("Type") in (1, "A") and item.get("IPAddress")
    ]


def parse_ptr_records(output: str) -> list[str]:
    """The host names of ``toolcommands.resolve_address``'s answer (``Type`` 12, ``NameHost``)."""
    return [
        str(item["NameHost"])
        for item in _json_array(output, "DNS PTR records")
        if item.get("Type") in (12, "PTR") and item.get("NameHost")
    ]
