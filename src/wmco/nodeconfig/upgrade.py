"""The node steps of a roll-out: take a serving node out, work on it, put it back.

An existing Windows node is never reconfigured for a new version, nor rebooted for the
operator's sake, while it serves pods. :mod:`wmco.controllers.rollout` decides *when* a node may
go (the ``maxUnavailable`` budget); this module does *what* happens to it:

1. :func:`take_out`: label it ``windowsmachineconfig.openshift.io/upgrading=true``, cordon it and
   drain it through the Eviction API (:mod:`.drain`), so PodDisruptionBudgets are honoured: a
   refused eviction is retried until ``drain_timeout`` and never bypassed;
2. :func:`reboot`: when the node asks for one (``reboot-required``), restart the host and wait
   until its kubelet reports Ready again *after* the restart (a heartbeat newer than the reboot:
   the Ready condition of a node whose kubelet just stopped still says True for a while);
3. the configure flow (by the caller);
4. :func:`put_back`: uncordon, drop the label and the ``reboot-required`` annotation in one
   patch.

A node whose steps fail is left as it is: cordoned and labelled, which is what stops the
roll-out (:func:`wmco.controllers.rollout.decide`).

:class:`RebootGuard` is the same care inside the configure flow: when the Containers feature
or the Hyper-V role needs a restart on a node that already exists and runs pods, the node is
taken out first (label, cordon, drain) and put back once the flow has it Ready again; a flow
that fails in between leaves it labelled, so the roll-out gate finishes the job.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from lightkube.resources.core_v1 import Node

from wmco import kube, names
from wmco.nodeconfig import drain
from wmco.nodeconfig import node as node_mod
from wmco.nodeconfig import runner as runner_mod
from wmco.nodeconfig.instance import ConfigurationError, Inputs, Instance, Step

log = logging.getLogger(__name__)


def _labels(node: Node | None) -> dict[str, str]:
    return dict((node.metadata.labels if node and node.metadata else None) or {})


def is_upgrading(node: Node | None) -> bool:
    """Whether the node carries the ``upgrading`` label (in flight, or a failed upgrade)."""
    return _labels(node).get(names.UPGRADING_LABEL) == names.TRUE


def reboot_required(node: Node | None) -> bool:
    """Whether the node asks for a safe reboot (``reboot-required`` annotation present)."""
    return names.REBOOT_REQUIRED_ANNOTATION in node_mod.annotations_of(node)


def is_unschedulable(node: Node | None) -> bool:
    """Whether the node is cordoned."""
    return bool(node is not None and node.spec is not None and node.spec.unschedulable)


async def take_out(
    client: kube.Client,
    address: str,
    node_name: str,
    *,
    timeout: float,
    on_blocked: drain.Blocked | None = None,
) -> int:
    """Label the node as upgrading, cordon it and drain it; return how many pods were evicted.

    Raises:
        ConfigurationError: The drain did not finish in ``timeout`` seconds (step ``drain``; the
            message names the pods and what refused them).
    """
    await kube.patch(
        client, Node, node_name, {"metadata": {"labels": {names.UPGRADING_LABEL: names.TRUE}}}
    )
    try:
        return await drain.drain(client, node_name, timeout=timeout, on_blocked=on_blocked)
    except drain.DrainTimeoutError as exc:
        raise ConfigurationError(address, Step.DRAIN, str(exc)) from None


async def put_back(client: kube.Client, node_name: str, *, rebooted: bool) -> None:
    """Uncordon the node and drop the ``upgrading`` label (and ``reboot-required`` if rebooted)."""
    annotations = {names.REBOOT_REQUIRED_ANNOTATION: None} if rebooted else {}
    await kube.patch(
        client,
        Node,
        node_name,
        {
            "spec": {"unschedulable": None},
            "metadata": {"labels": {names.UPGRADING_LABEL: None}, "annotations": annotations},
        },
    )


def _heartbeat_since(node: Node | None, moment: float) -> bool:
    """Ready, with a heartbeat (or transition) at or after ``moment`` (Unix seconds)."""
    conditions = (node.status.conditions if node and node.status else None) or []
    for condition in conditions:
        if condition.type != "Ready" or condition.status != "True":
            continue
        for stamp in (condition.lastHeartbeatTime, condition.lastTransitionTime):
            parsed = kube.parse_time(stamp)
            # The API server keeps whole seconds: compare with the reboot's second.
            if parsed is not None and parsed.timestamp() >= int(moment):
                return True
    return False


async def wait_ready_since(
    client: kube.Client, instance: Instance, node_name: str, moment: float, *, timeout: float
) -> None:
    """Wait until the node's kubelet reports Ready after ``moment``.

    Raises:
        ConfigurationError: Not so within ``timeout`` seconds (step ``reboot``).
    """
    deadline = time.monotonic() + timeout
    current, ready = await node_mod.wait_for_node(
        client, node_name, lambda n: _heartbeat_since(n, moment), deadline
    )
    if not ready:
        raise node_mod.not_ready(
            instance,
            Step.REBOOT,
            current,
            f"node {node_name} did not report Ready within {timeout:.0f}s of the reboot",
        )


async def reboot(
    client: kube.Client, instance: Instance, inputs: Inputs, node: Node | None, node_name: str
) -> float:
    """Restart the host, wait for SSH and for its node to be Ready again; return the seconds.

    Raises:
        ConfigurationError: No connection, the host did not come back, or its node did not
            become Ready in ``node_ready_timeout``.
    """
    settings_ = inputs.settings
    started = time.time()
    restarted = [started]

    async def mark() -> None:  # anything the kubelet reports after this is from the new boot
        restarted[0] = time.time()

    runner = await runner_mod.connect(client, instance, inputs, node)
    try:
        runner.step = Step.REBOOT
        await runner_mod.reboot(
            runner, settings_.ssh_boot_deadline, settings_.ssh_command_timeout, before=mark
        )
    finally:
        await runner.close()
    await wait_ready_since(
        client, instance, node_name, restarted[0], timeout=settings_.node_ready_timeout
    )
    return time.time() - started


@dataclasses.dataclass
class RebootGuard:
    """Drain a serving node before the configure flow restarts its host; put it back after.

    The node is taken out as a roll-out takes it out (label, cordon, drain: :func:`take_out`),
    so a flow that fails after the drain leaves it labelled: its next pass goes through the
    roll-out gate, which puts it back once it is configured (and holds the roll-out meanwhile).

    Attributes:
        client: API client.
        address: The instance's address (for messages).
        node_name: The existing node (``None``: a new host, nothing to protect).
        timeout: Seconds the drain may take.
        taken_out: Whether :meth:`before_reboot` took the node out (so :meth:`restore` puts it
            back; a node a roll-out took out is put back by the roll-out).
    """

    client: kube.Client
    address: str
    node_name: str | None
    timeout: float
    taken_out: bool = False

    @classmethod
    def of(
        cls, client: kube.Client, instance: Instance, existing: Node | None, inputs: Inputs
    ) -> RebootGuard:
        """The guard of one configure pass (``existing``: the node found at its start)."""
        name = existing.metadata.name if existing and existing.metadata else None
        return cls(client, instance.address, name, inputs.settings.drain_timeout)

    async def before_reboot(self) -> None:
        """Take the node out (label, cordon, drain) when it exists and runs pods to evict.

        Raises:
            ConfigurationError: The pods could not be evicted in time (step ``drain``).
        """
        if self.node_name is None or not await drain.pods_on(self.client, self.node_name):
            return
        log.info("node %s: draining before the host restarts", self.node_name)
        self.taken_out = True
        await take_out(self.client, self.address, self.node_name, timeout=self.timeout)

    async def restore(self) -> None:
        """Put the node back if :meth:`before_reboot` took it out."""
        if self.taken_out and self.node_name is not None:
            await put_back(self.client, self.node_name, rebooted=False)
            self.taken_out = False
