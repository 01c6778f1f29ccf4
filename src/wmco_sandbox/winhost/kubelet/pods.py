"""The kubelet's pod worker: pods bound to this node run through containerd's CRI.

The worker watches pods with ``spec.nodeName=<node>`` in all namespaces (the Node authorizer lets
a node list and watch exactly those) and, for each one:

* syncs it (``kubelet_podsync``): admission, the network gate, the pod sandbox and its
  containers, then the Running status with the sandbox's IP; a pod that cannot start yet
  (runtime down, pod network not ready, sandbox failure) is retried every
  ``pod_retry_interval`` and at once when the runtime's readiness changes;
* re-creates the sandbox of a pod the API shows Running but containerd does not know (after a
  reboot dropped it), as a real kubelet starts a new sandbox for a dead one;
* finalises a graceful deletion (``deletionTimestamp`` set) by removing the sandbox (CNI DEL)
  and deleting the pod with grace 0, as a kubelet does once its containers are gone, so that
  drains and evictions complete.

Status goes through ``PATCH pods/<name>/status``, the only pod write NodeRestriction lets a node
make besides deleting its own pods. The pods seen are kept in ``NodeState.pods`` for the
kubelet's API (``/containerLogs``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Pod

from wmco_sandbox.winhost.kubelet import context as kubelet_context
from wmco_sandbox.winhost.kubelet import events as kubelet_events
from wmco_sandbox.winhost.kubelet import podsync as kubelet_podsync

__all__ = ["PodWorker"]

_DONE_PHASES = ("Succeeded", "Failed")


class PodWorker:
    """Runs the pods bound to the node and finalises their deletion."""

    def __init__(self, kubelet: kubelet_context.Kubelet) -> None:
        self._k = kubelet
        self._events = kubelet_events.EventRecorder(kubelet)
        self._syncer = kubelet_podsync.PodSyncer(kubelet, self._events)
        self._retry: set[tuple[str, str]] = set()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def run(self, client: AsyncClient) -> None:
        """Watch and sync pods forever (until cancelled)."""
        resync = asyncio.create_task(self._retry_loop(client))
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

    async def _retry_loop(self, client: AsyncClient) -> None:
        changed = self._k.state.runtime_changed
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._k.timings.pod_retry_interval):
                    await changed.wait()
            changed.clear()
            for key in list(self._retry):
                pod = self._k.state.pods.get(key)
                if pod is None:
                    self._retry.discard(key)
                    continue
                with contextlib.suppress(ApiError, httpx2.HTTPError):
                    await self._sync(client, "RESYNC", pod)

    def _known_to_runtime(self, pod: dict[str, Any]) -> bool:
        cri = self._k.env.cri()
        containers = (pod.get("spec") or {}).get("containers") or []
        if cri is None or not containers:
            return True  # nothing to compare with: leave the reported status alone
        uid = str(pod["metadata"].get("uid"))
        return cri.container_log(uid, str(containers[0]["name"])) is not None

    async def _sync(self, client: AsyncClient, event: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            await self._sync_locked(client, event, key, pod)

    async def _sync_locked(
        self, client: AsyncClient, event: str, key: tuple[str, str], pod: dict[str, Any]
    ) -> None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid"))
        ref = kubelet_podsync.pod_ref(pod)
        if event == "DELETED":
            self._k.state.pods.pop(key, None)
            self._retry.discard(key)
            self._locks.pop(key, None)
            self._events.forget(uid)
            await self._remove_sandbox(uid)
            return
        if event == "RESYNC":
            pod = self._k.state.pods.get(key, pod)
        self._k.state.pods[key] = pod
        if meta.get("deletionTimestamp"):
            self._retry.discard(key)
            self._k.log.info(
                "kuberuntime_container.go", f'"Killing container with a grace period" {ref}'
            )
            await self._remove_sandbox(uid)
            try:
                await client.delete(Pod, key[1], namespace=key[0], grace_period=0)
            except ApiError as err:
                if err.status.code != 404:
                    self._k.log.error(
                        "status_manager.go",
                        f'"Failed to delete status for pod" {ref} '
                        f'err="{kubelet_context.describe(err)}"',
                    )
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in _DONE_PHASES or (phase == "Running" and self._known_to_runtime(pod)):
            self._retry.discard(key)
            return
        if await self._syncer.sync(client, pod):
            self._retry.discard(key)
        else:
            self._retry.add(key)

    async def _remove_sandbox(self, uid: str) -> None:
        cri = self._k.env.cri()
        if cri is not None:
            with contextlib.suppress(Exception):
                await cri.remove_pod_sandbox(uid)
