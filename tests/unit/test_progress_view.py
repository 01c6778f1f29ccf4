"""The sandbox's progress view: in place on a terminal, one line per change in a log."""

from __future__ import annotations

import dataclasses
import datetime
import io
import re

from lightkube.models.core_v1 import ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event
from rich.console import Console

from wmco_sandbox import progress
from wmco_sandbox.progress import Failure, HostRow, Phase, ProgressView


def _row(index: int, **stages: bool) -> HostRow:
    flags = {"provisioned": True, "ssh": False, "files": False, "services": False, "ready": False}
    flags.update(stages)
    return HostRow(
        name=f"win-{index:03d}",
        origin="machine",
        address=f"10.0.{index // 250}.{index % 250 + 1}",
        build="10.0.20348",
        last_command="hostname",
        **flags,
    )


def _event(message: str, kind: str, second: int) -> Event:
    return Event(
        metadata=ObjectMeta(name=f"e{second}", namespace="wmco"),
        involvedObject=ObjectReference(kind="ConfigMap", name="windows-instances"),
        message=message,
        type=kind,
        reason="InstanceSetupFailure" if kind == "Warning" else "InstanceSetup",
        lastTimestamp=datetime.datetime(2026, 12, 1, 18, 0, second, tzinfo=datetime.UTC),
    )


def test_plain_output_prints_one_line_per_host_state_change_and_nothing_otherwise() -> None:
    out = io.StringIO()
    view = ProgressView(out, live=False)
    hosts = [_row(1), _row(2)]
    view.show(hosts)
    view.show(hosts)  # nothing changed: nothing printed
    view.show([_row(1, ssh=True), _row(2)])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].endswith("win-001 10.0.0.2 (machine, 10.0.20348): provisioned")
    assert lines[2].endswith("win-001 10.0.0.2 (machine, 10.0.20348): provisioned -> ssh")
    assert "\x1b[" not in out.getvalue()  # no terminal control codes in a log


def test_plain_output_names_the_failed_step_and_error() -> None:
    out = io.StringIO()
    view = ProgressView(out, live=False)
    failed = dataclasses.replace(
        _row(7, ssh=True), failure=Failure("connect", "SSH refused the key")
    )
    view.show([failed])
    assert out.getvalue().rstrip().endswith("failed: step connect: SSH refused the key")


def test_a_failure_does_not_hide_a_ready_host() -> None:
    ready = dataclasses.replace(
        _row(3, ssh=True, files=True, services=True, ready=True),
        failure=Failure("node-ready", "timed out"),
    )
    assert ready.phase is Phase.READY


def test_terminal_view_summarises_500_hosts_and_lists_only_failed_and_slowest() -> None:
    hosts = [_row(i, ssh=i % 2 == 0, ready=i >= 100) for i in range(500)]
    hosts[42] = dataclasses.replace(hosts[42], failure=Failure("files", "disk full"))
    view = ProgressView(io.StringIO(), live=False, shown=12)
    view.show(hosts)
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(view.render(hosts))
    screen = console.export_text()
    assert "400/500 hosts Ready, 1 failed" in screen
    assert "ready: 400" in screen and "failed: 1" in screen
    listed = re.findall(r"^win-\d{3}", screen, re.MULTILINE)
    assert len(listed) == 12, screen
    assert listed[0] == "win-042"  # the failed host comes first, with its error
    assert "disk full" in screen and "files" in screen
    assert "... and 88 more hosts on their way" in screen
    assert len(screen.splitlines()) < 25  # readable at 500 hosts: one screen, not 500 lines


def test_terminal_view_refreshes_in_place() -> None:
    out = io.StringIO()
    view = ProgressView(out, live=True)
    view.show([_row(1), _row(2)])
    first = out.getvalue()
    view.show([_row(1, ssh=True), _row(2)])
    again = out.getvalue()[len(first) :]
    view.close()
    # rich's Live moves the cursor back up over its last screen before drawing the new one
    assert "\x1b[1A" in again and "\x1b[2K" in again
    assert again.count("hosts Ready") == 1


def test_failures_come_from_the_newest_warning_about_each_address() -> None:
    events = [
        _event("instance 10.0.0.5: step connect: SSH refused the key", "Warning", 1),
        _event("instance 10.0.0.5 configured as node win-a in 9.0s", "Normal", 2),
        _event("instance 10.0.0.6: step files: disk full", "Warning", 3),
        _event("instance 10.0.0.7 configured as node win-c in 9.0s", "Normal", 1),
        _event("instance 10.0.0.7: step node-ready: timed out", "Warning", 4),
        _event("something else entirely", "Warning", 5),
    ]
    assert progress.failures(events) == {
        "10.0.0.6": Failure("files", "disk full"),
        "10.0.0.7": Failure("node-ready", "timed out"),
    }
