"""Managed RuntimeClasses: one per Windows build present among the managed nodes (and Hyper-V ones).

Keys are RuntimeClass names (every name :func:`wmco.cluster.runtimeclasses.all_names` can give).
A reconcile reads the manager's shared Windows Node cache and its RuntimeClass cache, decides with
:func:`wmco.cluster.runtimeclasses.decide` and moves one step:

* wanted and missing (never made, or deleted by someone): create it;
* ours and edited (scheduling, overhead): replace it with what it must be, conditionally on the
  resourceVersion read, and say so in a Warning Event ``RuntimeClassRestored`` on it;
* ours with another handler (the field is immutable): delete it and create it again (Event too);
* ours and no longer wanted (no managed node of that build, or Hyper-V turned off): delete it;
* wanted but a RuntimeClass of that name exists that is not labelled as ours: leave it exactly as
  it is and report it once per version of that object in a Warning Event
  ``RuntimeClassConflict``.

Node events map to every name (the answer depends on all nodes); only changes of what the
decision reads (labels, the operator's version annotations, a node appearing or going) and the
periodic resync get through, not every status heartbeat. A failed write raises and is retried
with the key's backoff; nothing here touches hosts, so nothing here can stop hosts from being
configured.
"""

from __future__ import annotations

import logging
from typing import Any

from lightkube.resources.core_v1 import Node
from lightkube.resources.node_v1 import RuntimeClass

from wmco import kube, names
from wmco.cluster import runtimeclasses
from wmco.runtime import controller as controller_mod
from wmco.runtime import informer as informer_mod
from wmco.runtime import manager as manager_mod
from wmco.settings import HyperVMode, Settings

log = logging.getLogger(__name__)

NAMES = frozenset(runtimeclasses.all_names())
"""Every key this controller reconciles."""


def node_changed(event: informer_mod.Event[Any]) -> bool:
    """A Windows node appeared or went, or changed what the RuntimeClasses depend on."""
    if (
        event.type is not informer_mod.EventType.MODIFIED
        or event.old is None
        or event.origin is informer_mod.Origin.RESYNC
    ):
        return True
    now, before = event.obj.metadata, event.old.metadata
    return bool(
        (now.labels or {}) != (before.labels or {})
        or runtimeclasses.managed_nodes([event.obj]) != runtimeclasses.managed_nodes([event.old])
    )


def is_candidate(event: informer_mod.Event[Any]) -> bool:
    """The RuntimeClass has a name a managed one could have."""
    metadata = event.obj.metadata
    return bool(metadata and metadata.name in NAMES)


class RuntimeClassController:
    """Reconciles one RuntimeClass name (see the module docstring)."""

    def __init__(
        self,
        client: kube.Client,
        settings: Settings,
        recorder: kube.EventRecorder,
        nodes: informer_mod.Informer[Node],
        classes: informer_mod.Informer[RuntimeClass],
    ) -> None:
        self.client = client
        self.settings = settings
        self.recorder = recorder
        self.nodes = nodes
        self.classes = classes
        self._conflicts_reported: dict[str, str] = {}

    def wanted(self) -> dict[str, runtimeclasses.Desired]:
        """What should exist now, from the node cache."""
        return runtimeclasses.desired(
            runtimeclasses.managed_nodes(self.nodes.store.objects()),
            hyperv=self.settings.hyperv is not HyperVMode.OFF,
        )

    async def reconcile(self, name: str) -> controller_mod.Result | None:
        """Move RuntimeClass ``name`` one step towards what the nodes need."""
        want = self.wanted().get(name)
        existing = self.classes.store.get_by_name(name)
        decision = runtimeclasses.decide(want, existing)
        if decision.action is not runtimeclasses.Action.CONFLICT:
            self._conflicts_reported.pop(name, None)
        match decision.action:
            case runtimeclasses.Action.CREATE:
                assert want is not None
                await self._create(want)
            case runtimeclasses.Action.RESTORE:
                assert want is not None and existing is not None
                await kube.replace(self.client, runtimeclasses.manifest(want, existing))
                await self._restored(existing, want, decision.changed, "restored")
            case runtimeclasses.Action.RECREATE:
                assert want is not None and existing is not None
                await kube.delete(self.client, RuntimeClass, name)
                await self._create(want)
                await self._restored(existing, want, decision.changed, "deleted and re-created")
            case runtimeclasses.Action.DELETE:
                await kube.delete(self.client, RuntimeClass, name)
                log.info("RuntimeClass %s deleted: no managed Windows node needs it now", name)
            case runtimeclasses.Action.CONFLICT:
                assert existing is not None
                await self._conflict(existing)
            case runtimeclasses.Action.NONE:
                pass
        return None

    async def _create(self, want: runtimeclasses.Desired) -> None:
        try:
            await kube.create(self.client, runtimeclasses.manifest(want))
        except kube.AlreadyExists:
            # Our cache is behind; the next event for the name decides again.
            log.info("RuntimeClass %s appeared meanwhile; looking again", want.name)
            raise
        log.info(
            "RuntimeClass %s created (handler %s, nodes %s)",
            want.name,
            want.handler,
            ", ".join(f"{k}={v}" for k, v in want.node_selector),
        )

    async def _restored(
        self,
        existing: RuntimeClass,
        want: runtimeclasses.Desired,
        changed: tuple[str, ...],
        how: str,
    ) -> None:
        message = (
            f"RuntimeClass {want.name} is managed by the operator and was changed "
            f"({', '.join(changed)}); {how} as handler {want.handler} on nodes "
            f"{', '.join(f'{k}={v}' for k, v in want.node_selector)}. To run pods differently, "
            f"create a RuntimeClass of another name"
        )
        log.warning("%s", message)
        await self.recorder.emit_event(
            kube.ref_of(existing), "Warning", names.EventReason.RUNTIME_CLASS_RESTORED, message
        )

    async def _conflict(self, existing: RuntimeClass) -> None:
        metadata = existing.metadata
        name = (metadata.name if metadata else None) or ""
        version = (metadata.resourceVersion if metadata else None) or ""
        if self._conflicts_reported.get(name) == version:
            return
        message = (
            f"RuntimeClass {name} exists but is not the operator's (no label "
            f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE}): the operator leaves it as it "
            "is, so pods naming it get its handler and scheduling. Delete it to let the operator "
            "keep its own, or label it to hand it over"
        )
        log.warning("%s", message)
        await self.recorder.emit_event(
            kube.ref_of(existing), "Warning", names.EventReason.RUNTIME_CLASS_CONFLICT, message
        )
        self._conflicts_reported[name] = version


def setup(
    manager: manager_mod.Manager, settings: Settings, recorder: kube.EventRecorder
) -> controller_mod.Controller:
    """Register the controller on the shared Windows Node informer and a RuntimeClass informer."""
    nodes = manager.informer(Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS})
    classes = manager.informer(RuntimeClass)
    reconciler = RuntimeClassController(manager.client, settings, recorder, nodes, classes)
    controller = manager.controller("runtimeclass", reconciler.reconcile, workers=2)

    def every_name(obj: Any) -> tuple[str, ...]:
        return tuple(sorted(NAMES))

    controller.watch(nodes, every_name, node_changed)
    controller.watch(classes, controller_mod.own_key, is_candidate)
    return controller
