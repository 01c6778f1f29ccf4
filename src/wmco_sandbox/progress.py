"""The live progress view: one line per simulated host, from provisioned to node Ready.

Each column is read from where it really happens: the simulated host (booted, SSH sessions it
served, files on its disk, services its SCM runs) and the real API server (the Node's Ready
condition). The view prints the table again only when something changed, so a log stays readable.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import TextIO

from lightkube.resources.core_v1 import Node

from wmco_sandbox.cloud import SimHost

STAGES = ("provisioned", "ssh", "files", "services", "ready")
_MARK = {True: "yes", False: "-"}


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

    @property
    def cells(self) -> tuple[str, ...]:
        """The printed cells."""
        return (
            self.name,
            self.origin,
            self.address,
            self.build,
            *(_MARK[getattr(self, stage)] for stage in STAGES),
        )


def node_ready(node: Node) -> bool:
    """Whether a Node's Ready condition is True."""
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def rows(hosts: Iterable[SimHost], nodes: Iterable[Node]) -> list[HostRow]:
    """The progress of every host, given the current Windows nodes."""
    ready = {node.metadata.name for node in nodes if node.metadata and node_ready(node)}
    result = []
    for sim in sorted(hosts, key=lambda h: h.name):
        machine = sim.host.machine
        result.append(
            HostRow(
                name=sim.name,
                origin=sim.origin.value,
                address=sim.host.address,
                build=sim.host.facts.windows_build,
                provisioned=sim.host.up.is_set() or bool(sim.host.boot_count),
                ssh=bool(sim.host.command_log),
                files=machine.disk.get("C:\\k\\kubelet.exe") is not None,
                services=machine.scm.running("kubelet"),
                ready=sim.host.facts.hostname in ready,
            )
        )
    return result


class ProgressView:
    """Prints the table when it changes."""

    HEADER = (
        "HOST",
        "FROM",
        "ADDRESS",
        "BUILD",
        "PROVISIONED",
        "SSH",
        "FILES",
        "SERVICES",
        "READY",
    )

    def __init__(self, out: TextIO, started: float | None = None) -> None:
        self.out = out
        self.started = time.monotonic() if started is None else started
        self._last: list[HostRow] | None = None

    def show(self, current: list[HostRow]) -> None:
        """Print ``current`` if it differs from what was printed last."""
        if current == self._last:
            return
        self._last = current
        widths = [len(h) for h in self.HEADER]
        for row in current:
            widths = [max(w, len(c)) for w, c in zip(widths, row.cells, strict=True)]
        elapsed = time.monotonic() - self.started
        lines = [f"[{elapsed:6.1f}s] hosts:"]
        for cells in (self.HEADER, *(row.cells for row in current)):
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
