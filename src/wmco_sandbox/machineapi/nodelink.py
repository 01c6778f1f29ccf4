"""nodelink: pair each Node with its Machine and copy the Machine's node metadata onto it.

MAO ``pkg/controller/nodelink`` (``machine-api.md`` §5). A Node belongs to the Machine whose
``spec.providerID`` equals the Node's, or else whose ``status.addresses`` InternalIPs contain the
Node's first InternalIP. Then:

- the Machine gets ``status.nodeRef = {kind: Node, name, uid}`` (the machine controller turns that
  into phase ``Running``); a Node being deleted is not linked;
- the Node gets the annotation ``machine.openshift.io/machine: <ns>/<machine>``, the labels and
  annotations of ``machine.spec.metadata`` (overwriting), and each ``machine.spec.taints`` entry
  whose (key, effect) is missing; taints are never removed.

MAO writes the nodeRef only when the Node's readiness flips; writing it whenever it differs gives the
same result without the in-memory cache. More than one matching Machine is an error: the Node is
left alone and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from wmco_sandbox.machineapi import conditions, resources
from wmco_sandbox.machineapi.resources import Obj

log = logging.getLogger(__name__)


def find_machine(node: Obj, machines: Sequence[Obj]) -> Obj | None:
    """The Machine of ``node``: by providerID first, else by the Node's first InternalIP.

    Raises:
        LookupError: More than one Machine matches.
    """
    node_pid = resources.spec_of(node).get("providerID")
    if node_pid:
        by_pid = [m for m in machines if resources.spec_of(m).get("providerID") == node_pid]
        if len(by_pid) > 1:
            raise LookupError(f"{len(by_pid)} Machines have providerID {node_pid}")
        if by_pid:
            return by_pid[0]
    node_ips = resources.internal_ips(node)
    if not node_ips:
        return None
    by_ip = [m for m in machines if node_ips[0] in resources.internal_ips(m)]
    if len(by_ip) > 1:
        raise LookupError(f"{len(by_ip)} Machines have InternalIP {node_ips[0]}")
    return by_ip[0] if by_ip else None


def node_changes(node: Obj, machine: Obj, namespace: str) -> Obj | None:
    """The merge patch that brings the Machine's node metadata onto ``node`` (None: nothing to do)."""
    machine_meta = resources.spec_of(machine).get("metadata") or {}
    want_annotations = {
        **(machine_meta.get("annotations") or {}),
        resources.NODE_MACHINE_ANNOTATION: f"{namespace}/{resources.name_of(machine)}",
    }
    want_labels: dict[str, str] = machine_meta.get("labels") or {}
    have_annotations = resources.annotations_of(node)
    have_labels = resources.labels_of(node)
    patch: Obj = {}
    annotations = {k: v for k, v in want_annotations.items() if have_annotations.get(k) != v}
    labels = {k: v for k, v in want_labels.items() if have_labels.get(k) != v}
    if annotations or labels:
        patch["metadata"] = {}
        if annotations:
            patch["metadata"]["annotations"] = annotations
        if labels:
            patch["metadata"]["labels"] = labels
    taints: list[Obj] = list(resources.spec_of(node).get("taints") or [])
    present = {(t.get("key"), t.get("effect")) for t in taints}
    added = [
        {k: v for k, v in t.items() if k in ("key", "value", "effect")}
        for t in resources.spec_of(machine).get("taints") or []
        if (t.get("key"), t.get("effect")) not in present
    ]
    if added:
        patch["spec"] = {"taints": taints + added}
        patch.setdefault("metadata", {})["resourceVersion"] = resources.meta(node)[
            "resourceVersion"
        ]
    return patch or None


class NodeLinkController:
    """Links the Nodes of the cluster to the Machines of one namespace, one pass at a time.

    Args:
        client: An admin API client.
        namespace: The Machine API namespace.
    """

    def __init__(self, client: AsyncClient, namespace: str) -> None:
        self._client = client
        self._namespace = namespace

    async def link_all(self) -> None:
        """One pass over every Node."""
        machines = [
            resources.as_json(m)
            async for m in self._client.list(resources.Machine, namespace=self._namespace)
        ]
        if not machines:
            return
        async for node_obj in self._client.list(Node):
            node = resources.as_json(node_obj)
            if resources.is_deleting(node):
                continue
            try:
                machine = find_machine(node, machines)
            except LookupError as err:
                log.error("Node %s: %s", resources.name_of(node), err)
                continue
            if machine is None:
                continue
            try:
                await self._link(node, machine)
            except ApiError as err:
                # A conflict (the kubelet or the node controller wrote first) retries next pass.
                level = logging.DEBUG if err.status.code == 409 else logging.WARNING
                log.log(level, "Node %s: linking failed: %s", resources.name_of(node), err)

    async def _link(self, node: Obj, machine: Obj) -> None:
        node_meta = resources.meta(node)
        ref = {"kind": "Node", "name": node_meta["name"], "uid": node_meta["uid"]}
        if resources.status_of(machine).get("nodeRef") != ref:
            log.info("Machine %s: linked to Node %s", resources.name_of(machine), node_meta["name"])
            await self._client.patch(
                resources.Machine.Status,
                resources.name_of(machine),
                {"status": {"nodeRef": ref, "lastUpdated": conditions.now()}},
                namespace=self._namespace,
                patch_type=PatchType.MERGE,
            )
        if resources.is_deleting(machine):
            return
        patch = node_changes(node, machine, self._namespace)
        if patch:
            await self._client.patch(Node, node_meta["name"], patch, patch_type=PatchType.MERGE)
