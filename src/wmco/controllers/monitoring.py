"""Node monitoring: keeps the exporter CA Secret, the Service, the EndpointSlice and the ServiceMonitor.

One queue key (:data:`KEY`): everything is decided at once from the caches. Each part runs on
its own, so one that fails (an API error, a forbidden write) does not stop the others, and
nothing here touches a host: configuring hosts never waits for monitoring.

* **CA Secret** ``windows-exporter-ca``: :meth:`wmco.cluster.exportersecret.CaKeeper.ensure`
  with rotation. A restored, replaced or rotated CA gets an Event on the Secret
  (``MonitoringObjectRestored``, ``ExporterCAReplaced``, ``ExporterCARotated``).
* **Service**, **EndpointSlice**, **ServiceMonitor** (:mod:`wmco.cluster.monitoring`): created
  when missing, put back when they differ from what the operator wrote. A deletion or an edit
  by someone else is restored with a Warning Event ``MonitoringObjectRestored`` naming what was
  changed; the EndpointSlice following the Ready Windows nodes is an ordinary update (a log
  line, no Event).
* **The ServiceMonitor CRD** may not exist (plain Kubernetes without prometheus-operator): that
  is not an error. The operator says once that monitoring is disabled (Event
  ``monitoringDisabled`` on the Service) and looks again every :data:`RECHECK` seconds; when the
  CRD appears it creates the ServiceMonitor (``monitoringEnabled``). When the CRD is served at
  start-up, a ServiceMonitor informer also makes an edit show at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from lightkube.resources.core_v1 import Secret, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from wmco import kube, names
from wmco.cluster import exportersecret
from wmco.cluster import monitoring as objects
from wmco.controllers import hosts as hosts_mod
from wmco.runtime import controller as controller_mod
from wmco.runtime import informer as informer_mod
from wmco.runtime import manager as manager_mod

log = logging.getLogger(__name__)

KEY: Final = "windows-exporter"
RECHECK: Final = 60.0
"""Seconds between two passes without any event (CA rotation, a CRD that appeared)."""

ServiceMonitor: Final = kube.namespaced_custom_resource(
    names.MONITORING_GROUP,
    names.MONITORING_VERSION,
    names.SERVICE_MONITOR_KIND,
    names.SERVICE_MONITOR_PLURAL,
)

_CA_EVENTS: Final = {
    exportersecret.Action.RESTORED: ("Warning", names.EventReason.MONITORING_OBJECT_RESTORED),
    exportersecret.Action.RELABELLED: ("Warning", names.EventReason.MONITORING_OBJECT_RESTORED),
    exportersecret.Action.REPLACED: ("Warning", names.EventReason.EXPORTER_CA_REPLACED),
    exportersecret.Action.ROTATED: ("Normal", names.EventReason.EXPORTER_CA_ROTATED),
    exportersecret.Action.ADOPTED: ("Normal", names.EventReason.EXPORTER_CA_REPLACED),
}


async def service_monitors_served(client: kube.Client, namespace: str) -> bool:
    """Whether the cluster serves ``monitoring.coreos.com/v1`` ServiceMonitors (a list answers).

    Raises:
        kube.KubeError: The API failed otherwise (not a 404).
    """
    try:
        await kube.list_objects(client, ServiceMonitor, namespace=namespace)
    except kube.NotFound:
        return False
    return True


def _service_monitor(metadata: kube.ObjectMeta, spec: dict[str, Any]) -> Any:
    """A ServiceMonitor object (a generic resource: a dict with ``metadata``)."""
    return cast(Any, ServiceMonitor)(metadata=metadata, spec=spec)


class MonitoringReconciler:
    """Reconciles :data:`KEY` (see the module docstring)."""

    def __init__(
        self,
        hosts: hosts_mod.Hosts,
        services: informer_mod.Informer[Service],
        slices: informer_mod.Informer[EndpointSlice],
        monitors: informer_mod.Informer[Any] | None,
    ) -> None:
        self._hosts = hosts
        self._client = hosts.client
        self._recorder = hosts.recorder
        self._namespace = hosts.settings.namespace
        self._services = services
        self._slices = slices
        self._monitors = monitors
        self._written: set[str] = set()
        self._served: bool | None = None
        self._last_endpoints: list[str] | None = None
        self._unlistable: set[tuple[str, str]] = set()

    async def reconcile(self, key: str) -> controller_mod.Result | None:
        """Bring every part to its desired state; a failed part is retried with backoff."""
        failed = False
        parts: tuple[tuple[str, Callable[[], Awaitable[None]]], ...] = (
            ("exporter CA Secret", self.ensure_ca),
            ("Service", self.ensure_service),
            ("EndpointSlice", self.ensure_slice),
            ("ServiceMonitor", self.ensure_monitor),
        )
        for what, part in parts:
            try:
                await part()
            except kube.KubeError as exc:
                failed = True
                log.warning("monitoring: %s %s: %s", what, names.WINDOWS_EXPORTER, exc)
        if failed:
            return controller_mod.Result(requeue=True)
        return controller_mod.Result(requeue_after=RECHECK)

    async def _event(self, obj: Any, kind: str, reason: str, message: str) -> None:
        log.info("monitoring: %s", message)
        await self._recorder.emit_event(kube.ref_of(obj), kind, reason, message)

    async def ensure_ca(self) -> None:
        """The CA Secret holds a usable CA, rotated when due; what was done gets an Event."""
        keeper = self._hosts.exporter_cas
        await keeper.ensure(rotate_due=True)
        for outcome in keeper.take_outcomes():
            message = f"Secret {names.WINDOWS_EXPORTER_CA_SECRET} {outcome.action}"
            if outcome.detail:
                message += f": {outcome.detail}"
            event = _CA_EVENTS.get(outcome.action)
            secret = await kube.get(
                self._client, Secret, names.WINDOWS_EXPORTER_CA_SECRET, namespace=self._namespace
            )
            if event is None or secret is None:
                log.info("monitoring: %s", message)
                continue
            await self._event(secret, event[0], event[1], message)

    def _restored(self, kind: str, what: str) -> str:
        return f"{kind} {names.WINDOWS_EXPORTER} {what}; restored what the operator keeps there"

    async def _fresh(self, resource: type[Any]) -> Any:
        """Read one of the objects from the API (the caches only trigger; decisions are fresh)."""
        return await kube.get(
            self._client, resource, names.WINDOWS_EXPORTER, namespace=self._namespace
        )

    async def ensure_service(self) -> None:
        """The Service exists and is the operator's."""
        cached = self._services.store.get_by_name(names.WINDOWS_EXPORTER, self._namespace)
        if cached is not None and not objects.service_differences(cached):
            self._written.add("Service")
            return
        live = await self._fresh(Service)
        if live is None:
            created = await kube.create(self._client, objects.desired_service(self._namespace))
            if "Service" in self._written:
                await self._event(
                    created,
                    "Warning",
                    names.EventReason.MONITORING_OBJECT_RESTORED,
                    self._restored("Service", "was deleted"),
                )
            self._written.add("Service")
            return
        self._written.add("Service")
        changed = objects.service_differences(live)
        if not changed:
            return
        if "spec.clusterIP (not headless)" in changed:
            # A cluster IP cannot change in place: the Service is made again.
            await kube.delete(
                self._client, Service, names.WINDOWS_EXPORTER, namespace=self._namespace
            )
            restored = await kube.create(self._client, objects.desired_service(self._namespace))
        else:
            restored = await kube.replace(self._client, objects.restored_service(live))
        await self._event(
            restored,
            "Warning",
            names.EventReason.MONITORING_OBJECT_RESTORED,
            self._restored("Service", f"was changed ({', '.join(changed)})"),
        )

    async def ensure_slice(self) -> None:
        """The EndpointSlice lists exactly the Ready Windows nodes' InternalIPs.

        Following the nodes is an update; anything else that differs (labels, ports, or
        endpoints that are not the ones the operator last wrote) was someone's edit.
        """
        nodes = self._hosts.nodes.store.objects()
        endpoints = objects.exporter_endpoints(nodes)
        for ip, node_name, problem in objects.unlistable_endpoints(nodes):
            if (ip, node_name) not in self._unlistable:
                self._unlistable.add((ip, node_name))
                log.warning(
                    "monitoring: node %s: InternalIP %s %s, which an EndpointSlice cannot list; "
                    "its windows_exporter is not in EndpointSlice %s",
                    node_name,
                    ip,
                    problem,
                    names.WINDOWS_EXPORTER,
                )
        service = self._services.store.get_by_name(names.WINDOWS_EXPORTER, self._namespace)
        wanted = objects.desired_slice(self._namespace, endpoints, service)
        cached = self._slices.store.get_by_name(names.WINDOWS_EXPORTER, self._namespace)
        if cached is not None and not objects.slice_differences(cached, wanted):
            self._written.add("EndpointSlice")
            self._last_endpoints = objects.slice_addresses(cached)
            return
        live = await self._fresh(EndpointSlice)
        if live is None:
            created = await kube.create(self._client, wanted)
            if "EndpointSlice" in self._written:
                await self._event(
                    created,
                    "Warning",
                    names.EventReason.MONITORING_OBJECT_RESTORED,
                    self._restored("EndpointSlice", "was deleted"),
                )
            self._written.add("EndpointSlice")
            self._wrote_endpoints(created)
            return
        self._written.add("EndpointSlice")
        changed = objects.slice_differences(live, wanted)
        if not changed:
            self._last_endpoints = objects.slice_addresses(live)
            return
        edited = [c for c in changed if c != "endpoints"]
        if (
            "endpoints" in changed
            and self._last_endpoints is not None
            and objects.slice_addresses(live) != self._last_endpoints
        ):
            edited.append("endpoints")
        assert live.metadata is not None and wanted.metadata is not None
        wanted.metadata.resourceVersion = live.metadata.resourceVersion
        wanted.metadata.labels = {**(live.metadata.labels or {}), **objects.SLICE_LABELS}
        written = await kube.replace(self._client, wanted)
        if edited:
            await self._event(
                written,
                "Warning",
                names.EventReason.MONITORING_OBJECT_RESTORED,
                self._restored("EndpointSlice", f"was changed ({', '.join(edited)})"),
            )
        self._wrote_endpoints(written)

    def _wrote_endpoints(self, written: EndpointSlice) -> None:
        self._last_endpoints = objects.slice_addresses(written)
        log.info(
            "monitoring: EndpointSlice %s lists %s",
            names.WINDOWS_EXPORTER,
            ", ".join(self._last_endpoints) or "no node",
        )

    async def _report_served(self, served: bool) -> None:
        """Say once whether ServiceMonitors are served (monitoringEnabled / monitoringDisabled)."""
        if served == self._served:
            return
        self._served = served
        if served:
            reason = names.EventReason.MONITORING_ENABLED
            message = (
                "ServiceMonitors are served: windows_exporter is scraped through ServiceMonitor "
                f"{names.WINDOWS_EXPORTER}"
            )
        else:
            reason = names.EventReason.MONITORING_DISABLED
            message = (
                f"the {names.SERVICE_MONITOR_PLURAL}.{names.MONITORING_GROUP} CRD is not served "
                "(no prometheus-operator): no ServiceMonitor; the Service and EndpointSlice are "
                "kept for any other Prometheus"
            )
        service = self._services.store.get_by_name(names.WINDOWS_EXPORTER, self._namespace)
        if service is None:
            log.info("monitoring: %s", message)
            return
        await self._event(service, "Normal", reason, message)

    async def ensure_monitor(self) -> None:
        """The ServiceMonitor exists when its CRD is served; a missing CRD is not an error."""
        served = await service_monitors_served(self._client, self._namespace)
        await self._report_served(served)
        if not served:
            return
        if self._monitors is not None:
            cached = self._monitors.store.get_by_name(names.WINDOWS_EXPORTER, self._namespace)
            if cached is not None and not objects.monitor_differences(
                cached.metadata.labels, cached.get("spec"), self._namespace
            ):
                self._written.add("ServiceMonitor")
                return
        live = await self._fresh(ServiceMonitor)
        spec = objects.desired_monitor_spec(self._namespace)
        if live is None:
            created = await kube.create(
                self._client,
                _service_monitor(
                    kube.ObjectMeta(
                        name=names.WINDOWS_EXPORTER,
                        namespace=self._namespace,
                        labels=dict(objects.MONITOR_LABELS),
                    ),
                    spec,
                ),
            )
            if "ServiceMonitor" in self._written:
                await self._event(
                    created,
                    "Warning",
                    names.EventReason.MONITORING_OBJECT_RESTORED,
                    self._restored("ServiceMonitor", "was deleted"),
                )
            self._written.add("ServiceMonitor")
            return
        self._written.add("ServiceMonitor")
        metadata = live.metadata
        changed = objects.monitor_differences(metadata.labels, live.get("spec"), self._namespace)
        if not changed:
            return
        restored = await kube.replace(
            self._client,
            _service_monitor(
                kube.ObjectMeta(
                    name=names.WINDOWS_EXPORTER,
                    namespace=self._namespace,
                    labels={**(metadata.labels or {}), **objects.MONITOR_LABELS},
                    annotations=metadata.annotations,
                    resourceVersion=metadata.resourceVersion,
                ),
                spec,
            ),
        )
        await self._event(
            restored,
            "Warning",
            names.EventReason.MONITORING_OBJECT_RESTORED,
            self._restored("ServiceMonitor", f"was changed ({', '.join(changed)})"),
        )


def _node_changed(event: informer_mod.Event[Any]) -> bool:
    """Node events that can change the EndpointSlice: added, deleted, Ready or addresses."""
    if event.type is not informer_mod.EventType.MODIFIED or event.old is None:
        return True
    return objects.exporter_endpoints([event.obj]) != objects.exporter_endpoints([event.old])


def setup(
    manager: manager_mod.Manager, hosts: hosts_mod.Hosts, *, service_monitors: bool
) -> controller_mod.Controller:
    """Register the monitoring controller.

    Args:
        manager: The manager.
        hosts: The host state (Windows Node informer, exporter CA keeper, recorder).
        service_monitors: Whether ServiceMonitors were served at start-up (then they are
            watched as well; otherwise only looked at every :data:`RECHECK` seconds).
    """
    namespace = hosts.settings.namespace
    services = manager.informer(
        Service, namespace=namespace, fields={"metadata.name": names.WINDOWS_EXPORTER}
    )
    slices = manager.informer(
        EndpointSlice,
        namespace=namespace,
        labels={names.SERVICE_NAME_LABEL: names.WINDOWS_EXPORTER},
    )
    monitors = (
        manager.informer(
            ServiceMonitor, namespace=namespace, fields={"metadata.name": names.WINDOWS_EXPORTER}
        )
        if service_monitors
        else None
    )
    reconciler = MonitoringReconciler(hosts, services, slices, monitors)
    controller = manager.controller("monitoring", reconciler.reconcile, workers=1)

    def always(obj: Any) -> tuple[str]:
        return (KEY,)

    controller.watch(hosts.nodes, always, _node_changed)
    controller.watch(services, always)
    controller.watch(slices, always)
    if hosts.exporter_secrets is not None:
        controller.watch(hosts.exporter_secrets, always)
    if monitors is not None:
        controller.watch(monitors, always)
    controller.enqueue(KEY)
    return controller
