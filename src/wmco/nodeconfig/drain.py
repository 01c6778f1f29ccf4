"""Cordon, drain and uncordon a Node the way ``kubectl drain`` does, through the Eviction API.

Evictions honour PodDisruptionBudgets: a 429 answer means "not now" and the pod is tried again
until the deadline; the API server names the budget in the answer's causes ("The disruption
budget web needs 3 healthy pods and has 3 currently"), which :func:`drain` hands to its
``on_blocked`` callback once per pod (the roll-out turns it into a ``DrainBlocked`` Event), so no
read of PodDisruptionBudgets is needed. DaemonSet pods and mirror pods are left alone (their controllers would recreate
them at once, or they are not evictable), as ``kubectl drain --ignore-daemonsets`` does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from lightkube.resources.core_v1 import Node, Pod

from wmco import kube

log = logging.getLogger(__name__)

_MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


class DrainTimeoutError(TimeoutError):
    """Pods were still on the node when the deadline passed."""


Blocked = Callable[[Pod, str], Awaitable[None]]
"""Told about a pod whose eviction a disruption budget refuses, with the API server's reason."""


def refusal(exc: kube.ApiError) -> str:
    """Why the API server refused an eviction: the budget's own words when it gave them."""
    return "; ".join(exc.causes) or exc.message


async def set_unschedulable(client: kube.Client, node_name: str, unschedulable: bool) -> bool:
    """Cordon (``True``) or uncordon (``False``) a node; ``False`` if the node does not exist."""
    patched = await kube.patch(
        client, Node, node_name, {"spec": {"unschedulable": True if unschedulable else None}}
    )
    return patched is not None


def _evictable(pod: Pod) -> bool:
    metadata = pod.metadata
    if metadata is None:
        return False
    if _MIRROR_ANNOTATION in (metadata.annotations or {}):
        return False
    if any(ref.kind == "DaemonSet" and ref.controller for ref in metadata.ownerReferences or []):
        return False
    phase = pod.status.phase if pod.status else None
    return phase not in ("Succeeded", "Failed")


async def pods_on(client: kube.Client, node_name: str) -> list[Pod]:
    """Every pod bound to the node that a drain must evict."""
    result = await kube.list_objects(client, Pod, fields={"spec.nodeName": node_name})
    return [pod for pod in result.items if _evictable(pod)]


async def drain(
    client: kube.Client,
    node_name: str,
    *,
    timeout: float,
    poll: float = 1.0,
    on_blocked: Blocked | None = None,
) -> int:
    """Cordon the node and evict its pods; return how many pods were evicted.

    Args:
        client: API client.
        node_name: The node.
        timeout: Seconds before giving up.
        poll: Seconds between two passes over the remaining pods.
        on_blocked: Called once per pod whose eviction a disruption budget refuses (429).

    Raises:
        DrainTimeoutError: Pods remain after ``timeout`` seconds (e.g. a PodDisruptionBudget);
            the message names them and what refused them.
    """
    if not await set_unschedulable(client, node_name, True):
        return 0
    deadline = time.monotonic() + timeout
    evicted: set[tuple[str, str]] = set()
    refused: dict[tuple[str, str], str] = {}
    while True:
        remaining = await pods_on(client, node_name)
        if not remaining:
            return len(evicted)
        for pod in remaining:
            meta = pod.metadata
            assert meta is not None
            key = (meta.namespace or "", meta.name or "")
            if meta.deletionTimestamp is not None:
                continue
            try:
                await kube.evict(client, key[1], namespace=key[0])
                evicted.add(key)
                refused.pop(key, None)
            except kube.ApiError as exc:
                if exc.code == 429:
                    reason = refusal(exc)
                    log.info("eviction of %s/%s refused for now: %s", *key, reason)
                    if key not in refused and on_blocked is not None:
                        await on_blocked(pod, reason)
                    refused[key] = reason
                elif exc.code != 404:
                    raise
        if time.monotonic() > deadline:
            pods = ", ".join(
                f"{p.metadata.namespace}/{p.metadata.name}"
                + (f" ({refused[key]})" if (key := _key(p)) in refused else "")
                for p in remaining
                if p.metadata
            )
            raise DrainTimeoutError(
                f"node {node_name}: pods still running after {timeout:.0f}s: {pods}"
            )
        await asyncio.sleep(poll)


def _key(pod: Pod) -> tuple[str, str]:
    meta = pod.metadata
    return (meta.namespace or "", meta.name or "") if meta else ("", "")
