"""Draining a Machine's Node before its instance is destroyed, as MAO's drain controller does.

MAO (``pkg/controller/machine/drain_controller.go``, ``machine-api.md`` §4.3) cordons the Node and
evicts its pods through the Eviction API (so PodDisruptionBudgets are honoured) with ``Force``,
``IgnoreAllDaemonSets`` and ``DeleteEmptyDirData``; mirror pods are left alone. When the Node is
unreachable (``Ready=Unknown``) it evicts with a 1 s grace period and stops waiting for pods that
have been terminating for more than 1 s, since no kubelet will ever confirm their end.

This is one non-blocking step: it cordons, asks for evictions, and reports whether the Node is
empty. The machine controller calls it again until it is (MAO blocks up to 20 s per attempt and
then requeues; observably the same, without holding a worker).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Final

from lightkube import ALL_NS, ApiError, AsyncClient
from lightkube.models.meta_v1 import DeleteOptions, ObjectMeta
from lightkube.resources.core_v1 import Node, Pod, PodEviction

from wmco_sandbox.machineapi import resources
from wmco_sandbox.machineapi.resources import Obj

log = logging.getLogger(__name__)

MIRROR_POD_ANNOTATION: Final = "kubernetes.io/config.mirror"
UNREACHABLE_GRACE_SECONDS: Final = 1
SKIP_WAIT_FOR_DELETE_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class DrainResult:
    """Where a drain stands.

    Attributes:
        done: The Node is cordoned and no pod that must go is left (or the Node is gone).
        message: For the ``Drained`` condition and events.
    """

    done: bool
    message: str


def node_unreachable(node: Obj) -> bool:
    """Whether the Node's ``Ready`` condition is ``Unknown`` (its kubelet stopped reporting)."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "Unknown"
        for c in resources.status_of(node).get("conditions") or []
    )


def must_go(pod: Obj) -> bool:
    """Whether a drain evicts ``pod``: everything but DaemonSet pods and mirror pods."""
    if MIRROR_POD_ANNOTATION in resources.annotations_of(pod):
        return False
    owner = resources.controller_owner(pod)
    return not (owner is not None and owner.get("kind") == "DaemonSet")


def counts_as_gone(pod: Obj, *, unreachable: bool, now: datetime.datetime) -> bool:
    """Whether a terminating pod no longer holds up the drain (only on an unreachable Node)."""
    stamp = resources.meta(pod).get("deletionTimestamp")
    if not (unreachable and stamp):
        return False
    since = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return (now - since).total_seconds() > SKIP_WAIT_FOR_DELETE_SECONDS


async def drain_step(client: AsyncClient, node_name: str) -> DrainResult:
    """Cordon ``node_name`` and evict what must go; report whether the drain is complete.

    Args:
        client: An admin API client.
        node_name: The Node to drain.

    Returns:
        ``done`` when nothing is left to wait for.
    """
    try:
        node = resources.as_json(await client.get(Node, node_name))
    except ApiError as err:
        if err.status.code == 404:
            return DrainResult(True, "Node drain skipped")
        raise
    if not resources.spec_of(node).get("unschedulable"):
        await client.patch(Node, node_name, {"spec": {"unschedulable": True}})
    unreachable = node_unreachable(node)
    now = datetime.datetime.now(datetime.UTC)
    waiting: list[str] = []
    for pod_obj in [
        p async for p in client.list(Pod, namespace=ALL_NS, fields={"spec.nodeName": node_name})
    ]:
        pod = resources.as_json(pod_obj)
        if not must_go(pod):
            continue
        meta = resources.meta(pod)
        qualified = f"{meta.get('namespace')}/{meta.get('name')}"
        if counts_as_gone(pod, unreachable=unreachable, now=now):
            continue
        if not resources.is_deleting(pod):
            blocked = await _evict(client, pod, unreachable=unreachable)
            if blocked:
                return DrainResult(False, f"cannot evict pod {qualified}: {blocked}")
        waiting.append(qualified)
    log.debug("drain %s (unreachable: %s): waiting for %s", node_name, unreachable, waiting)
    if waiting:
        return DrainResult(False, f"waiting for pods to terminate: {', '.join(sorted(waiting))}")
    return DrainResult(True, "Drain finished successfully")


async def _evict(client: AsyncClient, pod: Obj, *, unreachable: bool) -> str | None:
    """Ask the Eviction API to evict ``pod``; the reason when refused (a PDB), else None."""
    meta = resources.meta(pod)
    eviction = PodEviction(
        metadata=ObjectMeta(name=meta["name"], namespace=meta["namespace"]),
        deleteOptions=DeleteOptions(gracePeriodSeconds=UNREACHABLE_GRACE_SECONDS)
        if unreachable
        else None,
    )
    try:
        await client.create(eviction, meta["name"], namespace=meta["namespace"])
    except ApiError as err:
        if err.status.code == 404:
            return None
        if err.status.code == 429:
            return err.status.message or "disruption budget"
        raise
    return None
