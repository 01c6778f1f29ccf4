"""The live progress view of the sandbox: where every simulated host stands, from boot to Ready.

Each host's phase is read from where it really happens: the simulated host (booted, SSH sessions
it served, files on its disk, services its SCM runs) and the real API server (the Node's Ready
condition, and the operator's Warning Events, whose messages start with ``instance <address>:``).

Two renderings, chosen by where the output goes:

* **a terminal**: one screen refreshed in place (rich's Live display): the hosts per phase with a
  progress bar, then only the failed and the slowest hosts with their last step and error, so the
  view stays readable for hundreds of hosts and never scrolls away;
* **anything else** (CI, a log file): one plain line per host state change, nothing when nothing
  changed.

What the view reads from the API server it reads through :class:`ClusterWatch`: one list + watch
of the Windows Nodes and of the Events of the operator's namespaces, kept in memory, and the
failures recomputed only when an Event changed. A refresh every half second then costs the API
server nothing, at 500 hosts as at one (listing them on every refresh was two lists of every
Event per tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TextIO

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event, Node
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from wmco import names
from wmco.runtime import informer as informer_mod
from wmco_sandbox.cloud import SimHost

SHOWN_HOSTS = 12
"""How many problem hosts (failed first, then the slowest) the terminal view lists."""

_FAILURE = re.compile(r"instance (?P<address>[^\s:]+): step (?P<step>[^:]+): ")


class Phase(enum.StrEnum):
    """How far a host got, in order; ``failed`` is a host whose last word was an error."""

    BOOTING = "booting"
    PROVISIONED = "provisioned"
    SSH = "ssh"
    FILES = "files"
    SERVICES = "services"
    READY = "ready"
    FAILED = "failed"


_ORDER = list(Phase)


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """The operator's last complaint about a host (from a Warning Event)."""

    step: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class HostRow:
    """Where one host stands."""

    name: str
    origin: str
    address: str
    build: str
    provisioned: bool
    ssh: bool
    files: bool
    services: bool
    ready: bool
    last_command: str = ""
    failure: Failure | None = None

    @property
    def reached(self) -> Phase:
        """The furthest phase the host reached, failures aside."""
        stages = (
            (self.ready, Phase.READY),
            (self.services, Phase.SERVICES),
            (self.files, Phase.FILES),
            (self.ssh, Phase.SSH),
            (self.provisioned, Phase.PROVISIONED),
        )
        return next((phase for done, phase in stages if done), Phase.BOOTING)

    @property
    def phase(self) -> Phase:
        """The phase shown: ``failed`` while a host that is not Ready has an error."""
        if self.failure is not None and not self.ready:
            return Phase.FAILED
        return self.reached

    @property
    def last_step(self) -> str:
        """The operator's failed step, else the last command the host ran."""
        if self.failure is not None and not self.ready:
            return self.failure.step
        return self.last_command


def node_ready(node: Node) -> bool:
    """Whether a Node's Ready condition is True."""
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def failures(events: Iterable[Event]) -> dict[str, Failure]:
    """The newest word about each host address, when that word was a Warning.

    The operator's failure Events say ``instance <address>: step <step>: <message>``; a newer
    Normal Event naming the same instance (it was configured) clears the failure.
    """
    newest: dict[str, tuple[str, Event]] = {}
    for event in events:
        match = _FAILURE.match(event.message or "")
        address = match["address"] if match else _configured_address(event.message or "")
        if address is None:
            continue
        stamp = _stamp(event)
        if address not in newest or stamp >= newest[address][0]:
            newest[address] = (stamp, event)
    result: dict[str, Failure] = {}
    for address, (_, event) in newest.items():
        match = _FAILURE.match(event.message or "")
        if event.type == "Warning" and match:
            result[address] = Failure(match["step"], (event.message or "")[match.end() :])
    return result


def _configured_address(message: str) -> str | None:
    found = re.match(r"instance (?P<address>[^\s:]+) configured as node ", message)
    return found["address"] if found else None


def _stamp(event: Event) -> str:
    moment = event.lastTimestamp or event.eventTime or event.firstTimestamp
    return moment.isoformat() if moment is not None else ""


def rows(
    hosts: Iterable[SimHost],
    nodes: Iterable[Node],
    problems: Mapping[str, Failure] | None = None,
) -> list[HostRow]:
    """The progress of every host, given the current Windows nodes and the operator's failures."""
    ready = {node.metadata.name for node in nodes if node.metadata and node_ready(node)}
    problems = problems or {}
    result = []
    for sim in sorted(hosts, key=lambda h: h.name):
        machine = sim.host.machine
        log = sim.host.command_log
        result.append(
            HostRow(
                name=sim.name,
                origin=sim.origin.value,
                address=sim.host.address,
                build=sim.host.facts.windows_build,
                provisioned=sim.host.up.is_set() or bool(sim.host.boot_count),
                ssh=bool(log),
                files=machine.disk.get("C:\\k\\kubelet.exe") is not None,
                services=machine.scm.running("kubelet"),
                ready=sim.host.facts.hostname in ready,
                last_command=_first_line(log[-1].command) if log else "",
                failure=problems.get(sim.host.address),
            )
        )
    return result


class ClusterWatch:
    """The Windows Nodes and the Events of some namespaces, kept by watches for the view.

    Use as ``async with ClusterWatch(client, namespaces) as watch:``; entering waits until
    every list has been stored (at most ``sync_timeout`` seconds).
    """

    def __init__(
        self, client: AsyncClient, namespaces: Sequence[str], *, sync_timeout: float = 60.0
    ) -> None:
        self.sync_timeout = sync_timeout
        self.nodes = informer_mod.Informer(
            client, Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS}
        )
        self.events = [informer_mod.Informer(client, Event, namespace=ns) for ns in namespaces]
        self._tasks: list[asyncio.Task[None]] = []
        self._seen: tuple[str | None, ...] | None = None
        self._failures: dict[str, Failure] = {}

    async def __aenter__(self) -> Self:
        watched: list[informer_mod.Informer[Any]] = [self.nodes, *self.events]
        for informer in watched:
            self._tasks.append(asyncio.create_task(informer.run(), name=f"view {informer.name}"))
        for informer in watched:
            if not await informer.wait_synced(self.sync_timeout):
                await self.__aexit__(None, None, None)
                raise TimeoutError(f"{informer.name}: not listed in {self.sync_timeout:.0f}s")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def windows_nodes(self) -> list[Node]:
        """Every Windows Node, as last seen."""
        return self.nodes.store.objects()

    def failures(self) -> dict[str, Failure]:
        """:func:`failures` of the Events, recomputed only when one of them changed."""
        versions = tuple(informer.resource_version for informer in self.events)
        if versions != self._seen:
            self._seen = versions
            events = [event for informer in self.events for event in informer.store.objects()]
            self._failures = failures(events)
        return self._failures

    def rows(self, hosts: Iterable[SimHost]) -> list[HostRow]:
        """:func:`rows` from the watched Nodes and Events."""
        return rows(hosts, self.windows_nodes(), self.failures())


def _first_line(command: str, width: int = 60) -> str:
    line = command.strip().splitlines()[0] if command.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


class ProgressView:
    """Shows host progress: refreshed in place on a terminal, one line per change otherwise.

    Args:
        out: Where to write.
        started: The moment elapsed times count from (default: now).
        live: Refresh in place (default: whether ``out`` is a terminal).
        shown: How many problem hosts the terminal view lists.
    """

    def __init__(
        self,
        out: TextIO,
        started: float | None = None,
        *,
        live: bool | None = None,
        shown: int = SHOWN_HOSTS,
    ) -> None:
        self.out = out
        self.started = time.monotonic() if started is None else started
        self.shown = shown
        self._phases: dict[str, Phase] = {}
        self._entered: dict[str, float] = {}
        self._live: Live | None = None
        if live if live is not None else _is_terminal(out):
            console = Console(file=out, force_terminal=True)
            self._live = Live(console=console, auto_refresh=False, transient=False)

    def show(self, current: list[HostRow]) -> None:
        """Take the hosts' current state and render what changed."""
        now = time.monotonic()
        changes = []
        for row in current:
            before = self._phases.get(row.name)
            if before is not row.phase:
                self._phases[row.name] = row.phase
                self._entered[row.name] = now
                changes.append((row, before))
        if self._live is not None:
            if not self._live.is_started:
                self._live.start()
            self._live.update(self.render(current, now), refresh=True)
            return
        for row, before in changes:
            self.out.write(self._line(row, before) + "\n")
        if changes:
            self.out.flush()

    def say(self, text: str) -> None:
        """Print a line of other output: above the live screen on a terminal, else as is."""
        if self._live is not None and self._live.is_started:
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)
            return
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        """Leave the last screen on the terminal (a no-op for plain output)."""
        if self._live is not None and self._live.is_started:
            self._live.stop()

    def _line(self, row: HostRow, before: Phase | None) -> str:
        elapsed = time.monotonic() - self.started
        change = f"{before} -> {row.phase}" if before is not None else str(row.phase)
        text = f"[{elapsed:7.1f}s] {row.name} {row.address} ({row.origin}, {row.build}): {change}"
        if row.phase is Phase.FAILED and row.failure is not None:
            text += f": step {row.failure.step}: {row.failure.message}"
        return text

    def render(self, current: list[HostRow], now: float | None = None) -> Group:
        """The terminal screen: the summary, the bar, the failed and the slowest hosts."""
        now = time.monotonic() if now is None else now
        total = len(current)
        counts = {phase: 0 for phase in Phase}
        for row in current:
            counts[row.phase] += 1
        ready = counts[Phase.READY]
        elapsed = now - self.started
        head = Text(f"[{elapsed:6.1f}s] {ready}/{total} hosts Ready")
        if counts[Phase.FAILED]:
            head.append(f", {counts[Phase.FAILED]} failed", style="bold red")
        bar = ProgressBar(total=max(total, 1), completed=ready, width=40)
        summary = Text("  ".join(f"{phase}: {counts[phase]}" for phase in Phase))
        parts: list[Text | ProgressBar | Table] = [head, bar, summary]
        problems = self._problem_hosts(current, now)
        if problems:
            table = Table(title=None, box=None, pad_edge=False, show_edge=False)
            for column in ("HOST", "ADDRESS", "PHASE", "FOR", "LAST STEP", "ERROR"):
                table.add_column(column, overflow="fold" if column == "ERROR" else "ellipsis")
            for row in problems:
                table.add_row(
                    row.name,
                    row.address,
                    Text(str(row.phase), style="red" if row.phase is Phase.FAILED else ""),
                    f"{now - self._entered.get(row.name, now):.0f}s",
                    row.last_step,
                    row.failure.message if row.phase is Phase.FAILED and row.failure else "",
                )
            parts.append(table)
            hidden = sum(1 for row in current if row.phase is not Phase.READY) - len(problems)
            if hidden > 0:
                parts.append(Text(f"... and {hidden} more hosts on their way"))
        return Group(*parts)

    def _problem_hosts(self, current: list[HostRow], now: float) -> list[HostRow]:
        """Failed hosts first, then the not-yet-Ready ones longest in their phase."""
        failed = [row for row in current if row.phase is Phase.FAILED]
        waiting = [row for row in current if row.phase not in (Phase.FAILED, Phase.READY)]
        waiting.sort(key=lambda row: (self._entered.get(row.name, now), _ORDER.index(row.phase)))
        return (failed + waiting)[: self.shown]


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
