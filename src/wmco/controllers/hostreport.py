"""How the host controllers report a configured host: log lines and Kubernetes Events.

:meth:`wmco.controllers.hosts.Hosts.converge` decides and configures; this module says what came
of it: ``<subject> configured as node <name> in <s>s (<files>; restarted: <services>)`` on the
object the host came from (its Machine, or ConfigMap ``windows-instances``), or, when a drift
probe found something and the flow repaired it, ``HostDriftRepaired`` on the Node with what was
found; ``HyperVUnavailable`` on the Node when Hyper-V isolation was asked for and cannot be had.
"""

from __future__ import annotations

import logging

from wmco import kube, names
from wmco.nodeconfig import instance as instance_mod
from wmco.nodeconfig import probe

log = logging.getLogger(__name__)


def node_ref(node_name: str) -> kube.ObjectRef:
    """The reference of a Node for an Event."""
    return kube.ObjectRef(api_version="v1", kind="Node", name=node_name)


def summary(outcome: instance_mod.Outcome) -> str:
    """What the flow wrote and restarted, in parentheses."""
    return (
        f"({outcome.files_written} files written, {outcome.files_unchanged} unchanged; "
        f"restarted: {', '.join(outcome.services_restarted) or 'none'})"
    )


async def configured(
    recorder: kube.EventRecorder,
    outcome: instance_mod.Outcome,
    *,
    subject: str,
    ref: kube.ObjectRef | None,
    setup_reason: str,
    drift: tuple[probe.Finding, ...] = (),
) -> None:
    """Log and record that a host was configured (or its drift repaired).

    Args:
        recorder: Where Events go.
        outcome: What the flow did.
        subject: How messages name the host.
        ref: The object the setup Event is about (``None``: log only).
        setup_reason: The setup Event's reason.
        drift: What the drift probe found, when the flow ran to repair it.
    """
    if drift:
        message = f"{subject}: {probe.describe(drift)}; repaired {summary(outcome)}"
        log.info("%s", message)
        await recorder.emit_event(
            node_ref(outcome.node_name),
            "Normal",
            names.EventReason.HOST_DRIFT_REPAIRED,
            message,
        )
    else:
        message = (
            f"{subject} configured as node {outcome.node_name} in {outcome.seconds:.1f}s "
            f"{summary(outcome)}"
        )
        log.info("%s", message)
        if ref is not None:
            await recorder.emit_event(ref, "Normal", setup_reason, message)
    if outcome.hyperv_problem is not None:
        await hyperv_unavailable(recorder, subject, outcome.node_name, outcome.hyperv_problem)


async def hyperv_unavailable(
    recorder: kube.EventRecorder, subject: str, node_name: str, problem: str
) -> None:
    """Say on the Node (Warning ``HyperVUnavailable``) why it offers no Hyper-V isolation."""
    log.warning("%s: %s", subject, problem)
    await recorder.emit_event(
        node_ref(node_name),
        "Warning",
        names.EventReason.HYPERV_UNAVAILABLE,
        problem,
    )
