"""The MachineSet controller: keep ``spec.replicas`` Machines per set, and report on them.

Modelled on MAO ``pkg/controller/machineset`` (``machine-api.md`` §3). One pass reconciles every
MachineSet of the namespace, reading Machines and Nodes straight from the API server:

1. validate: a non-empty selector that matches ``template.metadata.labels`` (else event
   ``ReconcileError`` and ``status.errorReason: InvalidConfiguration``);
2. own: Machines controlled by the set, or orphans matching its selector (adopted with a controller
   ownerReference); Machines being deleted do not count, so a replacement is created at once;
3. create ``generateName: <set>-`` Machines from the template, or delete the surplus chosen by the
   ``deletePolicy`` priorities of ``delete_policy.go`` (ties: newest first);
4. write ``status`` (replicas, fullyLabeled, ready, available, observedGeneration, labelSelector)
   with a merge patch on ``/status``, only when it changed.

Failed Machines are not replaced (they count until someone deletes them), and template changes
reach only new Machines, as in MAO. The decisions are pure functions; :func:`reconcile_namespace`
is the thin effectful shell.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from wmco_sandbox.machineapi import events, resources, selectors
from wmco_sandbox.machineapi.resources import Obj

log = logging.getLogger(__name__)

DELETE_POLICIES = ("Random", "Newest", "Oldest")


# --- Decisions ----------------------------------------------------------------------------------


def validation_error(machineset: Obj) -> str | None:
    """Why the MachineSet cannot be reconciled, or None when it can."""
    spec = resources.spec_of(machineset)
    selector = spec.get("selector") or {}
    template_labels = resources.labels_of(spec.get("template") or {})
    if selectors.is_empty(selector):
        return "spec.selector: Invalid value: empty selector is not valid for MachineSet"
    try:
        matching = selectors.matches(selector, template_labels)
    except ValueError as err:
        return f"spec.selector: Invalid value: {err}"
    if not matching:
        return (
            "spec.template.metadata.labels: Invalid value: "
            f"{template_labels}: `selector` does not match template `labels`"
        )
    if spec.get("replicas") is None:
        return "spec.replicas: Required value: the number of replicas must be set"
    policy = spec.get("deletePolicy") or "Random"
    if policy not in DELETE_POLICIES:
        return f"unsupported delete policy {policy}, must be one of 'Random', 'Newest', or 'Oldest'"
    return None


def controller_ref(machineset: Obj) -> Obj:
    """The controller ownerReference a Machine of ``machineset`` carries."""
    meta = resources.meta(machineset)
    return {
        "apiVersion": resources.API_VERSION,
        "kind": "MachineSet",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def classify(machineset: Obj, machines: Sequence[Obj]) -> tuple[list[Obj], list[Obj]]:
    """Split the namespace's Machines into (owned by the set, orphans it should adopt).

    Excluded: Machines controlled by another owner, Machines being deleted, and Machines the
    selector does not match (an empty selector matches none). Owned Machines come back sorted by name, as MAO sorts them.
    """
    uid = resources.meta(machineset).get("uid")
    selector = resources.spec_of(machineset).get("selector") or {}
    owned: list[Obj] = []
    orphans: list[Obj] = []
    if selectors.is_empty(selector):
        return owned, orphans  # MAO: an empty selector matches nothing
    for machine in machines:
        owner = resources.controller_owner(machine)
        if owner is not None and owner.get("uid") != uid:
            continue
        if resources.is_deleting(machine):
            continue
        if not selectors.matches(selector, resources.labels_of(machine)):
            continue
        (owned if owner is not None else orphans).append(machine)
    return sorted(owned, key=resources.name_of), sorted(orphans, key=resources.name_of)


def new_machine(machineset: Obj) -> Obj:
    """The Machine the set creates: template metadata and spec, a controller ownerReference."""
    meta = resources.meta(machineset)
    template = resources.spec_of(machineset).get("template") or {}
    template_meta = template.get("metadata") or {}
    metadata: Obj = {
        "generateName": f"{meta['name']}-",
        "namespace": meta["namespace"],
        "ownerReferences": [controller_ref(machineset)],
    }
    if template_meta.get("labels"):
        metadata["labels"] = dict(template_meta["labels"])
    if template_meta.get("annotations"):
        metadata["annotations"] = dict(template_meta["annotations"])
    return {
        "apiVersion": resources.API_VERSION,
        "kind": "Machine",
        "metadata": metadata,
        "spec": dict(template.get("spec") or {}),
    }


def _created_at(machine: Obj) -> datetime.datetime | None:
    stamp = resources.meta(machine).get("creationTimestamp")
    if not stamp:
        return None
    return datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))


def delete_priority(policy: str, machine: Obj, now: datetime.datetime) -> float:
    """How urgently ``machine`` should go when scaling down (``delete_policy.go``; higher first).

    Args:
        policy: ``Random`` (also for ""), ``Newest`` or ``Oldest``.
        machine: The Machine.
        now: The current time (UTC).

    Returns:
        The priority: 100 for Machines already being deleted; the ``delete-machine`` annotation and
        a Machine in error come next; then the policy's own order.
    """
    annotations = resources.annotations_of(machine)
    status = resources.status_of(machine)
    marked = bool(
        annotations.get(resources.DELETE_MACHINE_ANNOTATION)
        or annotations.get(resources.LEGACY_DELETE_MACHINE_ANNOTATION)
    )
    errored = bool(status.get("errorReason") or status.get("errorMessage"))
    if resources.is_deleting(machine):
        return 100.0
    if marked or errored:
        return 100.0 if policy in ("Newest", "Oldest") else 50.0
    created = _created_at(machine)
    age = (now - created).total_seconds() if created else 0.0
    if policy == "Newest":
        # MAO: 100 - oldest(m), oldest(m) = 50 * (1 - e^(-age/8640000)), i.e. newest first.
        return 100.0 - 50.0 * (1.0 - math.exp(-max(age, 0.0) / 8_640_000))
    if policy == "Oldest":
        if created is None or age <= 0:
            return 0.0
        return 50.0 * (1.0 - math.exp(-age / 8_640_000))
    return 40.0 if not status.get("nodeRef") else 20.0


def pick_for_deletion(
    policy: str, machines: Sequence[Obj], count: int, now: datetime.datetime
) -> list[Obj]:
    """The ``count`` Machines to delete: highest priority first, ties broken newest first."""

    def key(machine: Obj) -> tuple[float, float, str]:
        created = _created_at(machine)
        return (
            delete_priority(policy, machine, now),
            created.timestamp() if created else 0.0,
            resources.name_of(machine),
        )

    return sorted(machines, key=key, reverse=True)[: max(count, 0)]


def _node_ready_since(node: Obj) -> datetime.datetime | None:
    for condition in resources.status_of(node).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            stamp = str(condition.get("lastTransitionTime") or "")
            if not stamp:
                return datetime.datetime.min.replace(tzinfo=datetime.UTC)
            return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return None


def compute_status(
    machineset: Obj,
    owned: Sequence[Obj],
    nodes: Mapping[str, Obj],
    now: datetime.datetime,
) -> Obj:
    """The set's status from its Machines and their Nodes (``machine-api.md`` §1.2).

    Args:
        machineset: The MachineSet.
        owned: Its Machines (not being deleted).
        nodes: Nodes by name.
        now: The current time (UTC), for ``minReadySeconds``.

    Returns:
        The status fields this controller owns.
    """
    spec = resources.spec_of(machineset)
    template_labels = resources.labels_of(spec.get("template") or {})
    min_ready = int(spec.get("minReadySeconds") or 0)
    fully_labeled = ready = available = 0
    for machine in owned:
        labels = resources.labels_of(machine)
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully_labeled += 1
        node_name = (resources.status_of(machine).get("nodeRef") or {}).get("name")
        node = nodes.get(str(node_name)) if node_name else None
        since = _node_ready_since(node) if node else None
        if since is None:
            continue
        ready += 1
        if min_ready == 0 or (now - since).total_seconds() >= min_ready:
            available += 1
    return {
        "replicas": len(owned),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": resources.meta(machineset).get("generation"),
        "labelSelector": selectors.format_selector(spec.get("selector") or {}),
    }


def status_changes(current: Obj, desired: Obj) -> Obj:
    """The keys of ``desired`` whose value differs from ``current`` (a merge patch body)."""
    return {k: v for k, v in desired.items() if current.get(k) != v}


# --- Effects ------------------------------------------------------------------------------------


class MachineSetController:
    """Reconciles every MachineSet of one namespace per pass.

    Args:
        client: An admin API client.
        namespace: The Machine API namespace.
    """

    def __init__(self, client: AsyncClient, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._reported: set[tuple[str, str]] = set()

    async def reconcile_namespace(self) -> None:
        """One pass: every MachineSet of the namespace, one step each."""
        sets = [
            resources.as_json(ms)
            async for ms in self._client.list(resources.MachineSet, namespace=self._namespace)
        ]
        if not sets:
            return
        machines = await self._list_machines()
        nodes = {
            str(node.metadata.name): resources.as_json(node)
            async for node in self._client.list(Node)
            if node.metadata is not None
        }
        for machineset in sets:
            if resources.is_deleting(machineset):
                continue
            try:
                await self._reconcile(machineset, machines, nodes)
            except ApiError as err:
                log.warning("MachineSet %s: %s", resources.name_of(machineset), err)

    async def _list_machines(self) -> list[Obj]:
        return [
            resources.as_json(m)
            async for m in self._client.list(resources.Machine, namespace=self._namespace)
        ]

    async def _reconcile(self, machineset: Obj, machines: list[Obj], nodes: dict[str, Obj]) -> None:
        name = resources.name_of(machineset)
        problem = validation_error(machineset)
        if problem is not None:
            await self._report_invalid(machineset, problem)
            return
        owned, orphans = classify(machineset, machines)
        for orphan in orphans:
            await self._adopt(machineset, orphan)
        owned = sorted([*owned, *orphans], key=resources.name_of)
        spec = resources.spec_of(machineset)
        diff = len(owned) - int(spec["replicas"])
        if diff < 0:
            for _ in range(-diff):
                created = await self._client.create(
                    resources.machine_resource(new_machine(machineset))
                )
                log.info(
                    "MachineSet %s: created Machine %s",
                    name,
                    resources.as_json(created)["metadata"]["name"],
                )
        elif diff > 0:
            policy = spec.get("deletePolicy") or "Random"
            now = datetime.datetime.now(datetime.UTC)
            for victim in pick_for_deletion(policy, owned, diff, now):
                await self._delete(victim)
                log.info("MachineSet %s: deleted Machine %s", name, resources.name_of(victim))
        if diff != 0 or orphans:
            owned, _ = classify(machineset, await self._list_machines())
        desired = compute_status(machineset, owned, nodes, datetime.datetime.now(datetime.UTC))
        status = resources.status_of(machineset)
        if status.get("errorReason") or status.get("errorMessage"):
            desired.update(errorReason=None, errorMessage=None)
        patch = status_changes(status, desired)
        if patch:
            await self._client.patch(
                resources.MachineSet.Status,
                name,
                {"status": patch},
                namespace=self._namespace,
                patch_type=PatchType.MERGE,
            )

    async def _adopt(self, machineset: Obj, machine: Obj) -> None:
        meta = resources.meta(machine)
        refs = [*(meta.get("ownerReferences") or []), controller_ref(machineset)]
        await self._client.patch(
            resources.Machine,
            meta["name"],
            {"metadata": {"ownerReferences": refs, "resourceVersion": meta["resourceVersion"]}},
            namespace=self._namespace,
            patch_type=PatchType.MERGE,
        )
        machine.setdefault("metadata", {})["ownerReferences"] = refs

    async def _delete(self, machine: Obj) -> None:
        try:
            await self._client.delete(
                resources.Machine, resources.name_of(machine), namespace=self._namespace
            )
        except ApiError as err:
            if err.status.code != 404:
                raise

    async def _report_invalid(self, machineset: Obj, problem: str) -> None:
        meta = resources.meta(machineset)
        key = (str(meta.get("uid")), f"{meta.get('generation')}:{problem}")
        if key not in self._reported:
            self._reported.add(key)
            message = f"failed validation on MachineSet {meta.get('name')!r}: {problem}"
            log.warning("%s", message)
            await events.record(
                self._client,
                machineset,
                type_=events.WARNING,
                reason="ReconcileError",
                message=message,
            )
        status = resources.status_of(machineset)
        desired: dict[str, Any] = {
            "errorReason": resources.INVALID_CONFIGURATION,
            "errorMessage": problem,
            "observedGeneration": meta.get("generation"),
        }
        patch = status_changes(status, desired)
        if patch:
            await self._client.patch(
                resources.MachineSet.Status,
                meta["name"],
                {"status": patch},
                namespace=self._namespace,
                patch_type=PatchType.MERGE,
            )
