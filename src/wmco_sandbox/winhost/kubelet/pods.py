"""The kubelet's pod worker: pods bound to this node "run" without pulling any image.

The worker watches pods with ``spec.nodeName=<node>`` in all namespaces (the Node authorizer lets
a node list and watch exactly those) and, for each one:

* admits it (node selector and ``spec.os``, see ``kubelet_node.admission_failure``) and reports
  it Running (phase, conditions, pod IP = node IP, running container statuses, start time), or
  Failed with the admission reason; nothing is reported while containerd is down, and such pods
  are synced again as soon as it runs;
* finalises a graceful deletion (``deletionTimestamp`` set) by deleting the pod with grace 0, as
  a kubelet does once its containers are gone, so that drains and evictions complete.

Status goes through ``PATCH pods/<name>/status``, the only pod write NodeRestriction lets a node
make besides deleting its own pods.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from wmco_sandbox.winhost.kubelet import context as kubelet_context
from wmco_sandbox.winhost.kubelet import heartbeat as kubelet_heartbeat
from wmco_sandbox.winhost.kubelet import node as kubelet_node

__all__ = ["PodWorker"]

_TERMINAL_OR_RUNNING = ("Running", "Succeeded", "Failed")


class PodWorker:
    """Reports the pods bound to the node as running and finalises their deletion."""

    def __init__(self, kubelet: kubelet_context.Kubelet) -> None:
        self._k = kubelet
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}

    async def run(self, client: AsyncClient) -> None:
        """Watch and sync pods forever (until cancelled)."""
        resync = asyncio.create_task(self._resync_on_runtime_change(client))
        delay = 0.2
        try:
            while True:
                try:
                    async for event, pod in client.watch(
                        Pod, namespace="*", fields={"spec.nodeName": self._k.opts.node_name}
                    ):
                        delay = 0.2
                        await self._sync(client, event, pod.to_dict())
                except (ApiError, httpx2.HTTPError) as err:
                    self._k.log.error(
                        "reflector.go",
                        f'"Failed to watch pods" err="{kubelet_context.describe(err)}"',
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 7.0)
        finally:
            resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resync

    async def _resync_on_runtime_change(self, client: AsyncClient) -> None:
        state = self._k.state
        while True:
            await state.runtime_changed.wait()
            state.runtime_changed.clear()
            if state.runtime_up:
                for pod in list(self._pods.values()):
                    with contextlib.suppress(ApiError, httpx2.HTTPError):
                        await self._sync(client, "RESYNC", pod)

    async def _sync(self, client: AsyncClient, event: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        ref = f'pod="{namespace}/{name}"'
        if event == "DELETED":
            self._pods.pop((namespace, name), None)
            return
        self._pods[(namespace, name)] = pod
        if meta.get("deletionTimestamp"):
            self._k.log.info(
                "kuberuntime_container.go", f'"Killing container with a grace period" {ref}'
            )
            try:
                await client.delete(Pod, name, namespace=namespace, grace_period=0)
            except ApiError as err:
                if err.status.code != 404:
                    self._k.log.error(
                        "status_manager.go",
                        f'"Failed to delete status for pod" {ref} err="{kubelet_context.describe(err)}"',
                    )
            return
        if (pod.get("status") or {}).get("phase") in _TERMINAL_OR_RUNNING:
            return
        if not self._k.state.runtime_up:
            self._k.log.error(
                "pod_workers.go",
                f'"Error syncing pod, skipping" err="{kubelet_heartbeat.RUNTIME_DOWN}" {ref}',
            )
            return
        node_ip = self._k.opts.node_ip or self._k.env.facts.address
        rejection = kubelet_node.admission_failure(pod, self._k.state.labels)
        body = kubelet_node.pod_status_patch(pod, node_ip, kubelet_context.utcnow(), rejection)
        try:
            await client.patch(
                Pod.Status, name, body, namespace=namespace, patch_type=PatchType.STRATEGIC
            )
        except ApiError as err:
            self._k.log.error(
                "status_manager.go",
                f'"Failed to update status for pod" {ref} err="{kubelet_context.describe(err)}"',
            )
            return
        result = f"rejected: {rejection[1]}" if rejection else "running"
        self._k.log.info("kubelet.go", f'"SyncLoop ADD" {ref} result="{result}"', v=2)
