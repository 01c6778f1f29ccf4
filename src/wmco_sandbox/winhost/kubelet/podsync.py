"""One sync of one pod: what the kubelet's ``syncPod`` does for a pod bound to its node.

In the real kubelet's order (``pkg/kubelet/kubelet.go`` ``SyncPod``,
``kuberuntime_manager.go`` ``SyncPod``):

1. admission (``kubelet_podstatus.admission_failure``) against the Node's labels as the API
   server has them now (the real kubelet reads its own Node from an informer, so labels others
   add after registration count, such as the operator's ``hyperv=true``): a rejected pod is
   reported Failed;
2. the runtime must answer: otherwise ``Error syncing pod`` with ``container runtime is down``;
3. a non-hostNetwork pod needs the pod network: otherwise the Warning event
   ``NetworkNotReady`` (``network is not ready: container runtime network not ready: ...``) and
   the pod stays Pending; hostNetwork pods (every HostProcess pod) go on;
4. the RuntimeClass's handler, read as the node (``RuntimeClass "<n>" not found`` otherwise);
5. ``RunPodSandbox``: a failure gives the Warning event ``FailedCreatePodSandBox`` with
   ``Failed to create pod sandbox: <containerd's error>``;
6. the init containers, then the containers (``Failed`` / ``Error: <error>`` if one cannot
   start);
7. the status: Running, pod IP = the sandbox's IP.

:meth:`PodSyncer.sync` returns whether the pod is done (running or failed for good); the pod
worker retries the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.node_v1 import RuntimeClass
from lightkube.types import PatchType

from wmco_sandbox.winhost.core.processes import (
    ContainerRequest,
    CriError,
    CriRuntime,
    PodSandboxRequest,
)
from wmco_sandbox.winhost.kubelet import context as kubelet_context
from wmco_sandbox.winhost.kubelet import events as kubelet_events
from wmco_sandbox.winhost.kubelet import podstatus as kubelet_podstatus
from wmco_sandbox.winhost.kubelet import runtime as kubelet_runtime

__all__ = ["PodSyncer", "host_process", "pod_ref"]


def pod_ref(pod: Mapping[str, Any]) -> str:
    """``pod="<ns>/<name>"`` for klog lines."""
    meta = pod.get("metadata") or {}
    return f'pod="{meta.get("namespace")}/{meta.get("name")}"'


def host_process(pod: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
    """Whether a container is a HostProcess container (container setting over pod setting)."""

    def flag(context: Any) -> bool | None:
        options = (context or {}).get("windowsOptions") or {}
        value = options.get("hostProcess")
        return bool(value) if value is not None else None

    own = flag(container.get("securityContext"))
    if own is not None:
        return own
    return bool(flag((pod.get("spec") or {}).get("securityContext")))


class _NotYet(Exception):
    """The pod cannot start now; the message goes to the kubelet log."""


class PodSyncer:
    """Starts pods through the CRI and reports their status, as the node."""

    def __init__(
        self, kubelet: kubelet_context.Kubelet, recorder: kubelet_events.EventRecorder
    ) -> None:
        self._k = kubelet
        self._events = recorder

    async def sync(self, client: AsyncClient, pod: dict[str, Any]) -> bool:
        """Sync one pod once; return whether it is done (True) or must be retried (False)."""
        try:
            await self._sync(client, pod)
        except _NotYet as err:
            self._k.log.error(
                "pod_workers.go", f'"Error syncing pod, skipping" err="{err}" {pod_ref(pod)}'
            )
            return False
        except (ApiError, httpx2.HTTPError) as err:
            self._k.log.error(
                "status_manager.go",
                f'"Failed to update status for pod" {pod_ref(pod)} '
                f'err="{kubelet_context.describe(err)}"',
            )
            return False
        return True

    async def _patch(self, client: AsyncClient, pod: Mapping[str, Any], body: Any) -> None:
        meta = pod["metadata"]
        await client.patch(
            Pod.Status,
            meta["name"],
            body,
            namespace=meta["namespace"],
            patch_type=PatchType.STRATEGIC,
        )

    def _node_ip(self) -> str:
        return self._k.opts.node_ip or self._k.env.facts.address

    async def _pending(self, client: AsyncClient, pod: Mapping[str, Any]) -> None:
        if (pod.get("status") or {}).get("phase") != "Pending" or not (pod.get("status") or {}).get(
            "hostIP"
        ):
            now = kubelet_context.utcnow()
            await self._patch(
                client, pod, kubelet_podstatus.pending_status_patch(pod, self._node_ip(), now)
            )

    async def _handler(self, client: AsyncClient, pod: Mapping[str, Any]) -> str:
        name = (pod.get("spec") or {}).get("runtimeClassName")
        if not name:
            return ""
        try:
            runtime_class = await client.get(RuntimeClass, name)
        except ApiError as err:
            if err.status.code == 404:
                raise CriError(f'RuntimeClass "{name}" not found') from None
            raise
        return runtime_class.handler

    async def _node_labels(self, client: AsyncClient, pod: Mapping[str, Any]) -> dict[str, str]:
        """The Node's labels as of now when the pod selects on them (what the informer has)."""
        state = self._k.state
        if (pod.get("spec") or {}).get("nodeSelector"):
            try:
                node = await client.get(Node, self._k.opts.node_name)
            except ApiError as err:
                if err.status.code != 404:
                    raise
            else:
                if node.metadata is not None:
                    state.labels = dict(node.metadata.labels or {})
        return state.labels

    async def _sync(self, client: AsyncClient, pod: dict[str, Any]) -> None:
        env = self._k.env
        labels = await self._node_labels(client, pod)
        rejection = kubelet_podstatus.admission_failure(pod, labels)
        now = kubelet_context.utcnow()
        if rejection is not None:
            body = kubelet_podstatus.pod_status_patch(pod, self._node_ip(), now, rejection)
            await self._patch(client, pod, body)
            self._k.log.info(
                "kubelet.go", f'"SyncLoop ADD" {pod_ref(pod)} result="rejected: {rejection[1]}"'
            )
            return
        health = kubelet_runtime.check(env)
        cri = env.cri()
        if cri is None or not health.runtime_up:
            raise _NotYet(health.runtime_error or kubelet_runtime.RUNTIME_DOWN)
        spec = pod.get("spec") or {}
        host_network = bool(spec.get("hostNetwork"))
        if health.network_error and not host_network:
            message = f"{kubelet_runtime.NETWORK_NOT_READY}: {health.network_error}"
            await self._events.pod_event(client, pod, "Warning", "NetworkNotReady", message)
            await self._pending(client, pod)
            raise _NotYet(message)
        try:
            sandbox_ip = await self._start(client, cri, pod, host_network)
        except CriError as err:
            await self._pending(client, pod)
            raise _NotYet(str(err)) from None
        body = kubelet_podstatus.pod_status_patch(
            pod, self._node_ip(), kubelet_context.utcnow(), pod_ip=sandbox_ip
        )
        await self._patch(client, pod, body)
        self._k.log.info("kubelet.go", f'"SyncLoop ADD" {pod_ref(pod)} result="running"', v=2)

    async def _start(
        self, client: AsyncClient, cri: CriRuntime, pod: dict[str, Any], host_network: bool
    ) -> str:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        try:
            handler = await self._handler(client, pod)
            sandbox = await cri.run_pod_sandbox(
                PodSandboxRequest(
                    namespace=meta["namespace"],
                    name=meta["name"],
                    uid=meta["uid"],
                    host_network=host_network,
                    runtime_handler=handler,
                    images=tuple(str(c.get("image", "")) for c in containers),
                )
            )
        except CriError as err:
            message = f"Failed to create pod sandbox: {err}"
            await self._events.pod_event(client, pod, "Warning", "FailedCreatePodSandBox", message)
            raise
        for container in containers:
            request = ContainerRequest(
                pod_namespace=meta["namespace"],
                pod_name=meta["name"],
                pod_uid=meta["uid"],
                node_name=self._k.opts.node_name,
                name=str(container["name"]),
                image=str(container.get("image", "")),
                command=tuple(container.get("command") or ()),
                args=tuple(container.get("args") or ()),
                host_process=host_process(pod, container),
            )
            try:
                await cri.start_container(sandbox.sandbox_id, request)
            except CriError as err:
                await self._events.pod_event(client, pod, "Warning", "Failed", f"Error: {err}")
                raise
        return sandbox.ip
