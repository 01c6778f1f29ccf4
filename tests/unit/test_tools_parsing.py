"""Parsers and helpers of the CLI tools: preflight answers, log timestamps, durations, forms."""

from __future__ import annotations

import datetime as dt

import pytest

from wmco.tools import hostlogs, preflight
from wmco.windows import answers, preflightanswers, quoting, toolcommands

KEYS = toolcommands.ADMIN_AUTHORIZED_KEYS


def icacls(*entries: str) -> str:
    pad = " " * (len(KEYS) + 1)
    lines = [f"{KEYS} {entries[0]}", *(pad + e for e in entries[1:])]
    return "\n".join(lines) + "\n\nSuccessfully processed 1 files; Failed processing 0 files\n"


def test_restricted_key_file_acl_has_no_problem() -> None:
    entries = preflightanswers.parse_icacls(
        icacls("NT AUTHORITY\\SYSTEM:(F)", "BUILTIN\\Administrators:(F)"), KEYS
    )
    assert [e.principal for e in entries] == ["NT AUTHORITY\\SYSTEM", "BUILTIN\\Administrators"]
    assert preflightanswers.key_file_acl_problems(entries) == []


def test_inherited_and_other_principals_are_problems() -> None:
    entries = preflightanswers.parse_icacls(
        icacls("NT AUTHORITY\\SYSTEM:(I)(F)", "NT AUTHORITY\\Authenticated Users:(I)(RX)"), KEYS
    )
    problems = preflightanswers.key_file_acl_problems(entries)
    assert any("Authenticated Users" in p for p in problems)
    assert any("inherited" in p for p in problems)


def test_sid_principals_count_as_system_and_administrators() -> None:
    entries = preflightanswers.parse_icacls(icacls("*S-1-5-18:(F)", "*S-1-5-32-544:(F)"), KEYS)
    assert preflightanswers.key_file_acl_problems(entries) == []


def test_icacls_of_another_shape_is_refused() -> None:
    with pytest.raises(answers.CommandOutputError):
        preflightanswers.parse_icacls("C:\\other: The system cannot find the file specified.", KEYS)


def test_default_shell_in_cmd_is_recognised() -> None:
    refusal = (
        "'(Get-ItemProperty' is not recognized as an internal or external command,\n"
        "operable program or batch file.\n"
    )
    assert not preflightanswers.parse_default_shell(1, "", refusal).powershell
    ps = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe\n"
    assert preflightanswers.parse_default_shell(0, ps, "").powershell
    assert not preflightanswers.parse_default_shell(0, "", "").powershell


def test_round_trip_time_keeps_its_offset() -> None:
    moment = preflightanswers.parse_round_trip_time("2026-12-01T19:00:00.1234567+01:00\n")
    assert moment == dt.datetime(2026, 12, 1, 18, 0, 0, 123456, tzinfo=dt.UTC)
    with pytest.raises(answers.CommandOutputError):
        preflightanswers.parse_round_trip_time("2026-12-01T19:00:00.1234567\n")


@pytest.mark.parametrize(
    ("filters", "port", "allowed"),
    [
        ('[{"Protocol":"TCP","LocalPort":"10250"}]', 10250, True),
        ('{"Protocol":"TCP","LocalPort":["80","9182"]}', 9182, True),
        ('[{"Protocol":"TCP","LocalPort":"9000-9999"}]', 9182, True),
        ('[{"Protocol":"Any","LocalPort":"Any"}]', 10250, True),
        ('[{"Protocol":"UDP","LocalPort":"10250"}]', 10250, False),
        ("[]", 10250, False),
    ],
)
def test_port_filters(filters: str, port: int, allowed: bool) -> None:
    assert preflightanswers.port_allowed(filters, port) is allowed


def test_dns_records() -> None:
    a = '[{"Name":"api","Type":5,"NameHost":"x"},{"Name":"x","Type":1,"IPAddress":"10.0.0.1"}]'
    assert preflightanswers.parse_a_records(a) == ["10.0.0.1"]
    assert preflightanswers.parse_ptr_records('[{"Type":12,"NameHost":"win-a.test"}]') == [
        "win-a.test"
    ]


def test_query_forms_refuse_unsafe_values() -> None:
    with pytest.raises(quoting.UnsafeValueError):
        toolcommands.resolve_name("api'; Remove-Item C:\\ -Recurse; '")
    with pytest.raises(quoting.UnsafeValueError):
        toolcommands.resolve_address("not-an-address")
    with pytest.raises(quoting.UnsafeValueError):
        toolcommands.read_text_tail("relative\\kubelet.log", 10)
    assert toolcommands.read_text_tail("C:\\a.log", 0) == "Get-Content -LiteralPath 'C:\\a.log'"


HOST_NOW = dt.datetime(2026, 12, 1, 18, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def test_klog_lines_are_the_hosts_local_time_of_the_latest_such_date() -> None:
    assert hostlogs.line_time("I1201 17:59:00.000000  42 a.go:1] x", HOST_NOW) == HOST_NOW.replace(
        hour=17, minute=59
    )
    # December 31st seen on January 1st is last year's.
    january = HOST_NOW.replace(month=1, day=1)
    stamped = hostlogs.line_time("W1231 23:00:00.000000  42 a.go:1] x", january)
    assert stamped is not None and stamped.year == 2025
    assert hostlogs.line_time("continuation without a stamp", HOST_NOW) is None


def test_rfc3339_stamps_of_containerd_and_windows_exporter() -> None:
    logrus = 'time="2026-12-01T16:30:00.123456789Z" level=info msg="x"'
    gokit = "ts=2026-12-01T16:30:00.123Z caller=x.go:1 level=info msg=y"
    for line in (logrus, gokit):
        stamped = hostlogs.line_time(line, HOST_NOW)
        assert stamped is not None
        assert stamped.astimezone(dt.UTC).strftime("%H:%M") == "16:30"


def test_since_keeps_stamped_lines_and_their_continuations() -> None:
    lines = [
        "I1201 16:00:00.000000 1 a.go:1] old",
        "  old continuation",
        "I1201 17:50:00.000000 1 a.go:1] new",
        "  new continuation",
    ]
    kept = hostlogs.since_filter(lines, HOST_NOW - dt.timedelta(minutes=30), HOST_NOW)
    assert kept == lines[2:]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("1h30m", 5400), ("2d", 172800)]
)
def test_durations(text: str, seconds: int) -> None:
    assert hostlogs.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "10", "5x", "0s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        hostlogs.parse_duration(text)


def test_exit_code_ignores_warnings_and_optional_checks() -> None:
    rows = [
        preflight.Row("a", preflight.Status.PASS, ""),
        preflight.Row("b", preflight.Status.WARN, ""),
        preflight.Row("c", preflight.Status.SKIP, "", required=False),
    ]
    assert preflight.exit_code(rows) == 0
    assert preflight.exit_code([*rows, preflight.Row("d", preflight.Status.SKIP, "")]) == 1
    assert preflight.exit_code([*rows, preflight.Row("e", preflight.Status.FAIL, "")]) == 1
