"""``wmco gather DIR``: every Windows node's logs and service states, and the operator's Events.

What WMCO's must-gather collects for Windows nodes, into one folder::

    DIR/summary.txt            one line per node: collected, partial (what is missing) or failed
    DIR/events.yaml            Events of the operator namespace and Events about Windows Nodes
    DIR/<node>/node.yaml       the Node object
    DIR/<node>/services.txt    sc.exe queryex of every service the operator installs
    DIR/<node>/<service>.log   the service's log file (its last --tail lines)

Nodes are collected concurrently, at most ``concurrency`` at once; each node's connection is
pinned to the host key on its Node, like ``wmco logs``. A node that cannot be reached (or whose
host key does not match) is recorded in the summary with the reason and never stops the others;
a log that is missing on an otherwise reachable node makes that node ``partial``. Progress is
reported through a callback, one line per finished node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import pathlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncssh
import yaml
from lightkube.resources.core_v1 import Event, Node

from wmco import kube, names
from wmco.tools import hostaccess, hostlogs
from wmco.windows import sshfailures, toolcommands

DEFAULT_CONCURRENCY: Final = 5
DEFAULT_TAIL: Final = 10000


class Outcome(enum.StrEnum):
    """How collecting one node went."""

    COLLECTED = "collected"
    PARTIAL = "partial"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True, slots=True)
class NodeReport:
    """What was collected from one node.

    Attributes:
        node: The Node's name.
        outcome: Collected, partial or failed.
        files: Files written under ``DIR/<node>/``.
        problems: What could not be collected, and why.
    """

    node: str
    outcome: Outcome
    files: tuple[str, ...]
    problems: tuple[str, ...]

    def line(self) -> str:
        """The node's summary line."""
        text = f"{self.node}: {self.outcome} ({len(self.files)} files)"
        return text + ("; " + "; ".join(self.problems) if self.problems else "")


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """The whole collection.

    Attributes:
        nodes: One report per Windows node, sorted by name.
        events: How many Events were written to ``events.yaml``.
    """

    nodes: tuple[NodeReport, ...]
    events: int

    @property
    def failed(self) -> tuple[NodeReport, ...]:
        """Nodes nothing could be collected from over SSH."""
        return tuple(n for n in self.nodes if n.outcome is Outcome.FAILED)


def _dump(obj: Any) -> str:
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False)


def _write(folder: pathlib.Path, name: str, text: str) -> None:
    """Write one collected file (small, local: written synchronously)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def _safe_name(name: str) -> str:
    # Node names are DNS-1123 subdomains; anything else must not escape DIR.
    cleaned = "".join(c if c.isalnum() or c in "-._" else "_" for c in name).strip(".")
    return cleaned or "_"


async def _collect_node(
    node: Node,
    directory: pathlib.Path,
    key_source: Callable[[], Awaitable[asyncssh.SSHKey]],
    *,
    port: int,
    tail: int,
    connect_timeout: float,
) -> NodeReport:
    name = node.metadata.name if node.metadata and node.metadata.name else "?"
    folder = directory / _safe_name(name)
    _write(folder, "node.yaml", _dump(node))
    files = ["node.yaml"]
    try:
        target = hostaccess.node_target(node)
        key = await key_source()
    except hostaccess.ToolError as exc:
        return NodeReport(name, Outcome.FAILED, tuple(files), (str(exc),))
    host = hostaccess.open_node(target, key, hostaccess.tool_settings(port, connect_timeout))
    problems: list[str] = []
    try:
        await hostaccess.connect(host, what=f"node {name} ({target.address})")
        states = []
        for service in hostlogs.SERVICE_LOGS:
            result = await host.run(
                toolcommands.service_state_extended(service), what=f"{service} state", timeout=60
            )
            states.append(f"# sc.exe queryex {service} (exit {result.exit_status})")
            states.append(result.stdout.strip("\n") or result.stderr.strip("\n"))
            states.append("")
        _write(folder, "services.txt", "\n".join(states))
        files.append("services.txt")
        for service in hostlogs.SERVICE_LOGS:
            try:
                lines = await hostlogs.read_log(host, service, tail=tail)
            except hostaccess.ToolError as exc:
                problems.append(f"{service} log: {exc}")
                continue
            _write(folder, f"{service}.log", "\n".join(lines) + ("\n" if lines else ""))
            files.append(f"{service}.log")
    except (hostaccess.ToolError, sshfailures.SshError) as exc:
        return NodeReport(name, Outcome.FAILED, tuple(files), (*problems, str(exc)))
    finally:
        await host.close()
    outcome = Outcome.PARTIAL if problems else Outcome.COLLECTED
    return NodeReport(name, outcome, tuple(files), tuple(problems))


async def _events(client: kube.Client, namespace: str, windows_nodes: set[str]) -> list[Event]:
    operator = await kube.list_objects(client, Event, namespace=namespace)
    about_nodes = await kube.list_objects(client, Event, fields={"involvedObject.kind": "Node"})
    node_events = [e for e in about_nodes.items if e.involvedObject.name in windows_nodes]
    seen: set[str] = set()
    events = []
    for event in [*operator.items, *node_events]:
        uid = (event.metadata.uid if event.metadata else None) or str(id(event))
        if uid not in seen:
            seen.add(uid)
            events.append(event)
    return events


async def gather(
    client: kube.Client,
    directory: pathlib.Path,
    *,
    namespace: str,
    port: int,
    concurrency: int = DEFAULT_CONCURRENCY,
    tail: int = DEFAULT_TAIL,
    connect_timeout: float = hostaccess.DEFAULT_CONNECT_TIMEOUT,
    progress: Callable[[str], None] = lambda line: None,
) -> Report:
    """Collect every Windows node into ``directory`` (created if missing).

    Args:
        client: API client with the user's credentials.
        directory: Output folder.
        namespace: The operator namespace (its Events, the ``cloud-private-key`` Secret).
        port: sshd port of the hosts.
        concurrency: Nodes collected at once.
        tail: Lines of each log (0: whole files).
        connect_timeout: Seconds to keep trying each host's SSH connection.
        progress: Called with one line per finished node.

    Raises:
        hostaccess.ToolError: The Windows nodes cannot be listed.
    """
    try:
        listed = await kube.list_objects(
            client, Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS}
        )
    except kube.KubeError as exc:
        raise hostaccess.ToolError(f"cannot list Windows nodes: {exc}") from None
    nodes = sorted(listed.items, key=lambda n: (n.metadata.name if n.metadata else "") or "")
    key_lock = asyncio.Lock()
    key_cache: list[asyncssh.SSHKey] = []

    async def key_source() -> asyncssh.SSHKey:
        async with key_lock:
            if not key_cache:
                key_cache.append(await hostaccess.cluster_private_key(client, namespace))
            return key_cache[0]

    limit = asyncio.Semaphore(max(1, concurrency))
    finished = 0

    async def one(node: Node) -> NodeReport:
        nonlocal finished
        async with limit:
            report = await _collect_node(
                node, directory, key_source, port=port, tail=tail, connect_timeout=connect_timeout
            )
        finished += 1
        progress(f"[{finished}/{len(nodes)}] {report.line()}")
        return report

    reports = await asyncio.gather(*(one(node) for node in nodes))
    node_names = {r.node for r in reports}
    try:
        events = await _events(client, namespace, node_names)
    except kube.KubeError as exc:
        events = []
        _write(directory, "events.yaml", f"# cannot list Events: {exc}\n")
    else:
        _write(directory, "events.yaml", _dump([e.to_dict() for e in events]))
    summary = [
        f"Windows nodes: {len(reports)}; collected "
        f"{sum(r.outcome is Outcome.COLLECTED for r in reports)}, partial "
        f"{sum(r.outcome is Outcome.PARTIAL for r in reports)}, failed "
        f"{sum(r.outcome is Outcome.FAILED for r in reports)}; events: {len(events)}",
        *(r.line() for r in reports),
    ]
    _write(directory, "summary.txt", "\n".join(summary) + "\n")
    return Report(tuple(reports), len(events))
