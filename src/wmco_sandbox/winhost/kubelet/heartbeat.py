"""The kubelet's heartbeats: the node Lease, Node registration and node status updates.

Two heartbeats reach the control plane, as from a real kubelet (``kubelet-windows.md`` §5):

* :class:`LeaseController` renews ``kube-node-lease/<node>`` every ``lease_renew_interval``
  (0.25 x ``nodeLeaseDurationSeconds``). A missing Lease is created (backoff 200 ms, doubling,
  capped at 7 s); afterwards the last Lease seen is updated optimistically (PUT with its
  resourceVersion), re-read on a conflict, up to 5 times in a row. The owner reference to the
  Node is added as soon as the Node's UID is known.
* :class:`NodeStatusController` registers the Node once (POST; on 409 it reconciles only the
  kubelet-owned labels with a PATCH and never PUTs the Node, which NodeRestriction would refuse),
  then computes the status every ``status_interval`` and PATCHes ``/status`` when anything but
  heartbeat times changed or ``nodeStatusReportFrequency`` has passed. The CRI status
  (``kubelet_runtime``: containerd running, RuntimeReady, NetworkReady) is checked every
  ``runtime_check_interval``; a change is reported at once and wakes the pod worker.

Both loops only retry on API and transport errors, with the kubelet's log lines; ``stop()`` of
the process cancels them between two requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, cast

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.core_v1 import Node as NodeModel
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from wmco_sandbox.winhost.kubelet import context as kubelet_context
from wmco_sandbox.winhost.kubelet import node as kubelet_node
from wmco_sandbox.winhost.kubelet import runtime as kubelet_runtime

__all__ = ["LeaseController", "NodeStatusController"]

_STATUS_SOURCE = "kubelet_node_status.go"
_NETWORK_LOG_PERIOD = 5.0  # updateRuntimeUp's period: how often a real kubelet repeats the line


class LeaseController:
    """Creates and renews the node Lease."""

    def __init__(self, kubelet: kubelet_context.Kubelet) -> None:
        self._k = kubelet

    async def run(self, client: AsyncClient) -> None:
        """Renew the Lease forever (until cancelled)."""
        lease: Lease | None = None
        delay = 0.2
        while True:
            try:
                lease = await self._renew(client, lease)
                delay = 0.2
                await asyncio.sleep(self._k.timings.lease_renew_interval)
            except (ApiError, httpx2.HTTPError) as err:
                self._k.log.error(
                    "controller.go",
                    f'"Failed to ensure lease exists, will retry" '
                    f'err="{kubelet_context.describe(err)}" interval="{delay}s"',
                )
                lease = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 7.0)

    def _owner_references(self) -> list[OwnerReference] | None:
        uid = self._k.state.uid
        if uid is None:
            return None
        return [OwnerReference(apiVersion="v1", kind="Node", name=self._k.opts.node_name, uid=uid)]

    def _spec(self) -> LeaseSpec:
        now = kubelet_context.utcnow()
        if now.microsecond == 0:  # a MicroTime must carry six fractional digits on the wire
            now = now.replace(microsecond=1)
        return LeaseSpec(
            holderIdentity=self._k.opts.node_name,
            leaseDurationSeconds=self._k.opts.lease_duration_seconds,
            renewTime=now,
        )

    async def _renew(self, client: AsyncClient, lease: Lease | None) -> Lease:
        name, ns = self._k.opts.node_name, kubelet_node.LEASE_NAMESPACE
        for _ in range(5):
            if lease is None:
                try:
                    lease = await client.get(Lease, name, namespace=ns)
                except ApiError as err:
                    if err.status.code != 404:
                        raise
                    meta = ObjectMeta(
                        name=name, namespace=ns, ownerReferences=self._owner_references()
                    )
                    return await client.create(Lease(metadata=meta, spec=self._spec()))
            assert lease.metadata is not None
            lease.spec = self._spec()
            if self._k.state.uid is not None and not lease.metadata.ownerReferences:
                lease.metadata.ownerReferences = self._owner_references()
            try:
                return await client.replace(lease)
            except ApiError as err:
                if err.status.code not in (404, 409):
                    raise
                lease = None  # conflict or gone: read it again
        raise httpx2.HTTPError("failed 5 attempts to update lease")


class NodeStatusController:
    """Registers the Node and keeps its status current."""

    def __init__(self, kubelet: kubelet_context.Kubelet, host: kubelet_node.HostView) -> None:
        self._k = kubelet
        self._host = host
        self._posted: dict[str, Any] | None = None
        self._last_report = -float("inf")

    def _remember(self, node: NodeModel) -> None:
        if node.metadata is not None:
            self._k.state.uid = node.metadata.uid
            self._k.state.labels = dict(node.metadata.labels or {})

    async def register(self, client: AsyncClient) -> None:
        """Create the Node, or reconcile the kubelet's labels on an existing one.

        Retries forever (100 ms, doubling, capped at 7 s) on errors such as a forbidden label.
        """
        opts = self._k.opts
        if self._k.timings.registration_delay:
            await asyncio.sleep(self._k.timings.registration_delay)
        wanted = kubelet_node.initial_node(opts, self._host)
        delay = 0.1
        self._k.log.info(_STATUS_SOURCE, f'"Attempting to register node" node="{opts.node_name}"')
        while True:
            try:
                created = await client.create(cast(Node, Node.from_dict(wanted)))
                self._remember(created)
                return
            except ApiError as err:
                if err.status.code == 409:
                    await self._reconcile_existing(client, wanted)
                    return
                error: Exception = err
            except httpx2.HTTPError as err:
                error = err
            self._k.log.error(
                _STATUS_SOURCE,
                f'"Unable to register node with API server" '
                f'err="{kubelet_context.describe(error)}" node="{opts.node_name}"',
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 7.0)

    async def _reconcile_existing(self, client: AsyncClient, wanted: dict[str, Any]) -> None:
        name = self._k.opts.node_name
        existing = await client.get(Node, name)
        meta = existing.metadata or ObjectMeta()
        patch = kubelet_node.reconcile_labels_patch(
            meta.labels or {}, meta.annotations or {}, wanted
        )
        if patch is not None:
            existing = await client.patch(Node, name, patch, patch_type=PatchType.MERGE)
        self._remember(existing)

    async def run(self, client: AsyncClient) -> None:
        """Post node status on change or when the report interval is due (until cancelled)."""
        loop = asyncio.get_running_loop()
        opts, timings, state = self._k.opts, self._k.timings, self._k.state
        next_compute = loop.time()
        ip_error = kubelet_node.node_ip_error(opts.node_ip, self._host)
        logged_at = -float("inf")
        while True:
            health = kubelet_runtime.check(self._k.env)
            if health.runtime_version is not None:
                runtime = f"containerd://{health.runtime_version.lstrip('v')}"
                if runtime != self._host.containerd_version:
                    self._host = dataclasses.replace(self._host, containerd_version=runtime)
            changed = (health.runtime_up, health.network_ready) != (
                state.runtime_up,
                state.network_ready,
            )
            if changed:
                state.runtime_up, state.network_ready = health.runtime_up, health.network_ready
                state.runtime_changed.set()
            due = changed or loop.time() - logged_at >= _NETWORK_LOG_PERIOD
            if health.runtime_up and health.network_error and due:
                logged_at = loop.time()
                detail = health.network_error.split(": ", 1)[-1]
                self._k.log.error(
                    "kubelet.go", f'"Container runtime network not ready" networkReady="{detail}"'
                )
            if changed or loop.time() >= next_compute:
                next_compute = loop.time() + timings.status_interval
                if ip_error:
                    self._k.log.error(
                        _STATUS_SOURCE,
                        f'"Failed to set some node status fields" err="{ip_error}" '
                        f'node="{opts.node_name}"',
                    )
                if not await self._sync(client, health.node_error):
                    next_compute = loop.time() + min(timings.status_interval, 1.0)
            wait = next_compute - loop.time()
            await asyncio.sleep(max(0.0, min(timings.runtime_check_interval, wait)))

    async def _sync(self, client: AsyncClient, node_error: str | None) -> bool:
        opts = self._k.opts
        loop = asyncio.get_running_loop()
        previous = self._posted["status"]["conditions"] if self._posted else ()
        body = kubelet_node.node_status(
            opts,
            self._host,
            node_error,
            kubelet_context.utcnow(),
            previous,
        )
        due = loop.time() - self._last_report >= opts.status_report_frequency
        if not due and not kubelet_node.status_differs(self._posted, body):
            return True
        try:
            node = await client.patch(
                Node.Status, opts.node_name, body, patch_type=PatchType.STRATEGIC
            )
        except (ApiError, httpx2.HTTPError) as err:
            self._k.log.error(
                _STATUS_SOURCE,
                f'"Error updating node status, will retry" err="{kubelet_context.describe(err)}"',
            )
            return False
        self._remember(node)
        ready = _ready(body)
        if self._posted is None or _ready(self._posted) != ready:
            self._k.log.info(
                _STATUS_SOURCE, f'"Node condition Ready" status="{ready}" node="{opts.node_name}"'
            )
        self._posted, self._last_report = body, loop.time()
        return True


def _ready(body: dict[str, Any]) -> str:
    for cond in body["status"]["conditions"]:
        if cond["type"] == "Ready":
            return str(cond["status"])
    return "Unknown"
