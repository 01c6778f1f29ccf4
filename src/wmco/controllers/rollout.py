"""The roll-out gate: which existing Windows node may be taken out of service now.

A node that already serves pods is reconfigured for a new operator or payload version, or
rebooted because it asks for it (``reboot-required``), only through this gate, at most
``maxUnavailable`` at a time (:meth:`wmco.settings.Settings.max_unavailable_of` of the managed
Windows nodes). The rules (:func:`decide`, pure and unit-tested) follow the Machine Config
Operator and ``kubectl drain``:

* every managed node that is cordoned, NotReady, labelled ``upgrading`` or in flight counts
  against the budget; a node that is itself already unavailable may go (it costs nothing more);
* a node labelled ``upgrading`` that nobody is working on is a failed upgrade (or one an operator
  restart interrupted): no other node starts until it is fixed; the node itself may always go
  again (a retry, or resuming after a restart);
* new hosts (no Node yet) never come here: they serve nothing (only ``concurrency`` bounds them).

The :class:`Gate` is shared by both host controllers (Machines and listed instances use one
:class:`~wmco.controllers.hosts.Hosts`), and the decision and the claim of a node happen under one
lock, so two reconciles can never both take the last unit of budget. It reads the shared Node
informer's cache (no LIST per reconcile); what the cache cannot know yet (a label just patched, a
failure just recorded) the gate keeps in memory: the nodes in flight and the nodes that failed.
A waiting node is looked at again every :data:`POLL` seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Final

from lightkube.resources.core_v1 import Node, Pod

from wmco import kube, names
from wmco.nodeconfig import node as node_mod
from wmco.nodeconfig import upgrade
from wmco.nodeconfig.instance import ConfigurationError, Inputs, Instance, Outcome
from wmco.runtime import informer as informer_mod
from wmco.settings import Settings

log = logging.getLogger(__name__)

POLL: Final = 3.0
"""Seconds after which a node that waits for the budget (or a halted roll-out) is looked at again."""


class Verdict(enum.StrEnum):
    """What the gate says to one node."""

    GO = "go"
    WAIT = "wait"
    HALTED = "halted"


@dataclasses.dataclass(frozen=True, slots=True)
class NodeView:
    """What the gate needs of one Windows node.

    Attributes:
        name: The node's name.
        managed: Configured by the operator (it carries the ``version`` annotation).
        unavailable: Cordoned or not Ready.
        upgrading: Labelled ``upgrading``.
    """

    name: str
    managed: bool
    unavailable: bool
    upgrading: bool

    @classmethod
    def of(cls, node: Node) -> NodeView:
        """The view of a Node object."""
        return cls(
            name=(node.metadata.name if node.metadata else None) or "",
            managed=names.VERSION_ANNOTATION in node_mod.annotations_of(node),
            unavailable=upgrade.is_unschedulable(node) or not node_mod.node_is_ready(node),
            upgrading=upgrade.is_upgrading(node),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer, with what it was based on.

    Attributes:
        verdict: Go, wait for the budget, or halted by a failed node.
        budget: How many managed nodes may be unavailable.
        unavailable: The other nodes counted against the budget.
        halted_at: The failed node that stops the roll-out.
    """

    verdict: Verdict
    budget: int
    unavailable: tuple[str, ...] = ()
    halted_at: str | None = None

    def describe(self, node_name: str) -> str:
        """A sentence for the log."""
        if self.verdict is Verdict.HALTED:
            return (
                f"node {node_name} waits: the roll-out stopped at node {self.halted_at}, whose "
                "upgrade failed (it stays cordoned until a reconfiguration of it succeeds or it "
                "is deleted)"
            )
        if self.verdict is Verdict.WAIT:
            return (
                f"node {node_name} waits: {len(self.unavailable)} of at most {self.budget} "
                f"Windows nodes unavailable ({', '.join(self.unavailable)})"
            )
        return f"node {node_name} may go ({len(self.unavailable)} of {self.budget} unavailable)"


def decide(
    candidate: str,
    nodes: Iterable[NodeView],
    settings: Settings,
    *,
    in_flight: Collection[str] = (),
    failed: Collection[str] = (),
) -> Decision:
    """May ``candidate`` be taken out of service now?

    Args:
        candidate: The node that wants to go.
        nodes: Every Windows node (the informer's cache).
        settings: For ``max_unavailable``.
        in_flight: Nodes this operator is working on now.
        failed: Nodes whose upgrade failed (that the cache may not show labelled yet).

    Returns:
        The decision.
    """
    views = {view.name: view for view in nodes}
    managed = [view for view in views.values() if view.managed]
    budget = settings.max_unavailable_of(len(managed))
    me = views.get(candidate)
    others = [view for view in managed if view.name != candidate]
    unavailable = sorted(
        {view.name for view in others if view.unavailable or view.upgrading}
        | {name for name in in_flight if name != candidate}
    )
    if candidate in in_flight:  # someone else works on it right now
        return Decision(Verdict.WAIT, budget, tuple(unavailable))
    if candidate in failed or (me is not None and me.upgrading):
        return Decision(Verdict.GO, budget, tuple(unavailable))
    halted = sorted(
        view.name
        for view in others
        if view.name not in in_flight and (view.upgrading or view.name in failed)
    )
    if halted:
        return Decision(Verdict.HALTED, budget, tuple(unavailable), halted_at=halted[0])
    if (me is not None and me.unavailable) or len(unavailable) < budget:
        return Decision(Verdict.GO, budget, tuple(unavailable))
    return Decision(Verdict.WAIT, budget, tuple(unavailable))


@dataclasses.dataclass(frozen=True, slots=True)
class Work:
    """Why an existing node goes through the gate, and what it gets.

    Attributes:
        reboot: The node asks for a reboot (``reboot-required``).
        configure: The configure flow runs (a version differs, or an interrupted roll-out).
        from_version: The node's ``version`` annotation.
    """

    reboot: bool
    configure: bool
    from_version: str | None


def work_for(node: Node | None, version: str) -> Work | None:
    """What a roll-out does to the node, or ``None`` when it needs none (or is new).

    A node needs one when it was configured by another version, asks for a reboot, or still
    carries the ``upgrading`` label (an upgrade that failed, or that an operator restart cut).
    """
    if node is None:
        return None
    current = node_mod.annotations_of(node).get(names.VERSION_ANNOTATION)
    reboot = upgrade.reboot_required(node)
    outdated = current is not None and current != version
    if not (outdated or reboot or upgrade.is_upgrading(node)):
        return None
    return Work(reboot=reboot, configure=outdated or not reboot, from_version=current)


@dataclasses.dataclass(frozen=True, slots=True)
class Held:
    """The node did not go through the flow now: look again after ``requeue_after`` seconds."""

    requeue_after: float | None
    message: str


Configure = Callable[[Instance, Inputs], Awaitable[Outcome]]


@dataclasses.dataclass
class Gate:
    """The one roll-out gate of an operator (see the module docstring).

    Attributes:
        client: API client.
        recorder: Events on the Nodes (``NodeUpgrade``, ``NodeUpgradeFailed``, ``DrainBlocked``,
            ``NodeReboot``).
        settings: ``max_unavailable``, ``drain_timeout`` and the SSH deadlines.
        nodes: The shared Windows Node informer.
        in_flight: Nodes being worked on now.
        failed: Nodes whose last upgrade failed.
    """

    client: kube.Client
    recorder: kube.EventRecorder
    settings: Settings
    nodes: informer_mod.Informer[Node]
    in_flight: set[str] = dataclasses.field(default_factory=set)
    failed: set[str] = dataclasses.field(default_factory=set)
    _lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    _said: dict[str, str] = dataclasses.field(default_factory=dict)

    def views(self) -> list[NodeView]:
        """The gate's view of every Windows node in the cache."""
        return [NodeView.of(node) for node in self.nodes.store.objects()]

    async def claim(self, node_name: str) -> Decision:
        """Decide for ``node_name`` and, on GO, count it in flight (one atomic step)."""
        async with self._lock:
            views = self.views()
            present = {view.name for view in views}
            self.failed &= present  # a deleted node no longer halts anything
            for gone in set(self._said) - present:
                del self._said[gone]
            decision = decide(
                node_name,
                views,
                self.settings,
                in_flight=self.in_flight,
                failed=self.failed,
            )
            if decision.verdict is Verdict.GO:
                self.in_flight.add(node_name)
            return decision

    async def release(self, node_name: str, *, ok: bool | None) -> None:
        """The node's turn ended; ``ok=False`` keeps the roll-out stopped at it.

        ``ok=None``: nothing was done (its earlier failure, if any, still counts).
        """
        async with self._lock:
            self.in_flight.discard(node_name)
            if ok:
                self.failed.discard(node_name)
            elif ok is not None:
                self.failed.add(node_name)

    def _ref(self, node_name: str) -> kube.ObjectRef:
        return kube.ObjectRef(api_version="v1", kind="Node", name=node_name)

    async def _event(self, node_name: str, type_: str, reason: str, message: str) -> None:
        await self.recorder.emit_event(self._ref(node_name), type_, reason, message)

    async def run(
        self,
        instance: Instance,
        inputs: Inputs,
        node_name: str,
        configure: Configure,
        subject: str,
    ) -> Outcome | Held:
        """Take the node through its roll-out when the gate lets it; else say when to look again.

        The cache decides who may go; a fresh read of the Node then says what is left to do (the
        cache may not show yet that the node's previous turn already finished).

        Raises:
            ConfigurationError: A step failed; the node stays cordoned and labelled, with a
                Warning ``NodeUpgradeFailed`` on it, and no other node starts until it is fixed.
        """
        decision = await self.claim(node_name)
        if decision.verdict is not Verdict.GO:
            message = f"{subject}: {decision.describe(node_name)}"
            if self._said.get(node_name) != message:  # once per change, not every poll
                log.info("%s", message)
                self._said[node_name] = message
            return Held(POLL, message)
        self._said.pop(node_name, None)
        try:
            fresh = await kube.get(self.client, Node, node_name)
        except BaseException:
            await self.release(node_name, ok=None)
            raise
        work = work_for(fresh, inputs.version)
        if fresh is None or work is None:
            await self.release(node_name, ok=True)
            return Held(None, f"node {node_name}: no roll-out work left")
        try:
            outcome = await self._steps(instance, inputs, fresh, node_name, work, configure)
        except ConfigurationError as exc:
            await self.release(node_name, ok=False)
            await self._event(
                node_name,
                "Warning",
                names.EventReason.NODE_UPGRADE_FAILED,
                f"node {node_name} stays cordoned, and the roll-out stops here until it is "
                f"fixed: {exc}",
            )
            raise
        except BaseException:
            await self.release(node_name, ok=False)
            raise
        await self.release(node_name, ok=True)
        return outcome

    async def _steps(
        self,
        instance: Instance,
        inputs: Inputs,
        node: Node,
        node_name: str,
        work: Work,
        configure: Configure,
    ) -> Outcome | Held:
        started = time.monotonic()
        what = "reboot" if not work.configure else f"upgrade from {work.from_version}"
        if work.configure:
            await self._event(
                node_name,
                "Normal",
                names.EventReason.NODE_UPGRADE,
                f"node {node_name}: {what} to {inputs.version} started (cordon, drain, configure)",
            )

        async def blocked(pod: Pod, reason: str) -> None:
            meta = pod.metadata
            pod_name = f"{meta.namespace}/{meta.name}" if meta else "?"
            await self._event(
                node_name,
                "Warning",
                names.EventReason.DRAIN_BLOCKED,
                f"eviction of pod {pod_name} refused: {reason}; node {node_name} waits (up to "
                f"{inputs.settings.drain_timeout:.0f}s), the budget is not bypassed",
            )

        evicted = await upgrade.take_out(
            self.client,
            instance.address,
            node_name,
            timeout=inputs.settings.drain_timeout,
            on_blocked=blocked,
        )
        log.info("node %s: cordoned and drained (%d pods evicted)", node_name, evicted)
        if work.reboot:
            await self._event(
                node_name,
                "Normal",
                names.EventReason.NODE_REBOOT,
                f"node {node_name} drained ({evicted} pods evicted); rebooting its host as "
                f"{names.REBOOT_REQUIRED_ANNOTATION} asks",
            )
            seconds = await upgrade.reboot(self.client, instance, inputs, node, node_name)
            await self._event(
                node_name,
                "Normal",
                names.EventReason.NODE_REBOOT,
                f"node {node_name} rebooted and Ready again in {seconds:.1f}s",
            )
        outcome = await configure(instance, inputs) if work.configure else None
        await upgrade.put_back(self.client, node_name, rebooted=work.reboot)
        if outcome is None:
            return Held(None, f"node {node_name} rebooted and back in service")
        await self._event(
            node_name,
            "Normal",
            names.EventReason.NODE_UPGRADE,
            f"node {node_name} upgraded to {inputs.version} in "
            f"{time.monotonic() - started:.1f}s ({evicted} pods evicted; restarted: "
            f"{', '.join(outcome.services_restarted) or 'none'}); uncordoned",
        )
        return outcome


def pending(node: Node | None) -> bool:
    """Whether the node has roll-out work left that the up-to-date check must not hide.

    A node still labelled ``upgrading`` (an upgrade that failed or was cut short, possibly after
    its version was set) or asking for a reboot is not up to date.
    """
    return upgrade.is_upgrading(node) or upgrade.reboot_required(node)
