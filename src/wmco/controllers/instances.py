"""Listed instances ("bring your own host"): ConfigMap ``windows-instances`` → configured nodes.

Each entry ``<address>: username=<user>`` is its own unit of work: the work queue is keyed by the
instance address, not by the ConfigMap, so hosts are configured in parallel (bounded by the
shared slots of :mod:`wmco.controllers.hosts`), one broken host never holds up another, and a
failed host is retried with its own backoff. A special key validates the whole ConfigMap and
reports each bad entry in an Event on the ConfigMap, naming the entry and why.

Removing an entry, or deleting the ConfigMap, deconfigures the host and deletes its Node: the
Node's ``instance-address`` annotation says which entry it came from.

**An edit re-queues what it changed** (issue 12 §5): adding, removing or changing one entry of a
ConfigMap listing 500 hosts re-queues that one address (and the validation key), not all 500
(:func:`changed_addresses` compares the ConfigMap before and after). The first list, a deletion
of the ConfigMap and the periodic resync still re-queue every entry and every BYOH Node, so the
controller stays level-triggered. The parsed ConfigMap is kept per resourceVersion: a reconcile
of one host does not parse the whole list again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from lightkube.resources.core_v1 import ConfigMap, Node

from wmco import instances, kube, names
from wmco.controllers import hosts as hosts_mod
from wmco.nodeconfig import drain
from wmco.nodeconfig import instance as instance_mod
from wmco.nodeconfig import node as node_mod
from wmco.runtime import controller as controller_mod
from wmco.runtime import informer as informer_mod
from wmco.runtime import manager as manager_mod

log = logging.getLogger(__name__)

VALIDATE_KEY = "@validate"
"""Queue key that validates the whole ConfigMap (no address contains ``@``)."""


def _is_byoh(node: Node) -> bool:
    labels = (node.metadata.labels if node.metadata else None) or {}
    return labels.get(names.BYOH_LABEL) == names.TRUE


def _entries(data: Mapping[str, str] | None) -> dict[str, instances.Instance]:
    return {i.address.lower(): i for i in instances.parse_instances(data).instances}


def changed_addresses(old: Mapping[str, str] | None, new: Mapping[str, str] | None) -> set[str]:
    """The addresses whose entry was added, removed or changed between two ConfigMap datas.

    An entry that is still invalid, or whose only change is its spelling (a DNS name's case),
    is not a change; an entry that became invalid is one (its host is removed).
    """
    before, after = _entries(old), _entries(new)
    return {
        (after.get(address) or before[address]).address
        for address in before.keys() | after.keys()
        if before.get(address) != after.get(address)
    }


class InstancesReconciler:
    """Reconciles one listed instance (by address), or validates the ConfigMap."""

    def __init__(
        self,
        hosts: hosts_mod.Hosts,
        configmaps: informer_mod.Informer[ConfigMap],
        nodes: informer_mod.Informer[Node],
    ) -> None:
        self.hosts = hosts
        self.configmaps = configmaps
        self.nodes = node_mod.index_nodes(nodes)
        self._parsed: tuple[str | None, instances.ParsedInstances, dict[str, instances.Instance]]
        self._parsed = ("", instances.parse_instances(None), {})

    @property
    def _namespace(self) -> str:
        return self.hosts.settings.namespace

    def _configmap(self) -> ConfigMap | None:
        return self.configmaps.store.get_by_name(names.INSTANCES_CONFIGMAP, self._namespace)

    def parsed(self) -> instances.ParsedInstances:
        """The ConfigMap's entries; a missing ConfigMap lists no instance."""
        return self._parse()[0]

    def listed(self, address: str) -> instances.Instance | None:
        """The entry of ``address`` (DNS names compare case-insensitively), if listed."""
        return self._parse()[1].get(address.lower())

    def _parse(self) -> tuple[instances.ParsedInstances, dict[str, instances.Instance]]:
        configmap = self._configmap()
        version = configmap.metadata.resourceVersion if configmap and configmap.metadata else None
        if self._parsed[0] != version:
            parsed = instances.parse_instances(configmap.data if configmap else None)
            self._parsed = (version, parsed, {i.address.lower(): i for i in parsed.instances})
        return self._parsed[1], self._parsed[2]

    def keys_for_configmap(self, event: informer_mod.Event[Any]) -> Iterable[str]:
        """The validation key, and the addresses the event may have changed.

        An edit: the entries it added, removed or changed. The first list, a deletion, a
        resync: every listed address and every BYOH node's address.
        """
        keys = {VALIDATE_KEY}
        old = event.old
        edit = (
            event.type is informer_mod.EventType.MODIFIED
            and event.origin is not informer_mod.Origin.RESYNC
            and old is not None
        )
        if edit and old is not None:
            keys.update(changed_addresses(old.data, event.obj.data))
        else:
            keys.update(i.address for i in instances.parse_instances(event.obj.data).instances)
            keys.update(self._byoh_addresses())
        return sorted(keys)

    def _byoh_addresses(self) -> set[str]:
        result = set()
        for node in self.nodes.store.objects():
            annotations = (node.metadata.annotations if node.metadata else None) or {}
            if _is_byoh(node) and annotations.get(names.INSTANCE_ADDRESS_ANNOTATION):
                result.add(annotations[names.INSTANCE_ADDRESS_ANNOTATION])
        return result

    def keys_for_client_ca(self, obj: Any) -> Iterable[str]:
        """A changed kubelet client CA concerns every listed instance."""
        return sorted(i.address for i in self.parsed().instances)

    @staticmethod
    def keys_for_node(obj: Any) -> Iterable[str]:
        """A BYOH node maps to its instance address."""
        node: Node = obj
        annotations = (node.metadata.annotations if node.metadata else None) or {}
        address = annotations.get(names.INSTANCE_ADDRESS_ANNOTATION)
        return (address,) if address and _is_byoh(node) else ()

    async def reconcile(self, key: str) -> controller_mod.Result | None:
        """Validate the ConfigMap, or move one instance one step towards its desired state."""
        log.debug("instance %s: reconciling", key)
        if key == VALIDATE_KEY:
            await self._report_invalid_entries()
            return None
        inputs = await self.hosts.inputs()
        if inputs is None:
            log.info("instance %s: waiting for a usable private key Secret", key)
            return controller_mod.Result(requeue_after=10.0)
        listed = self.listed(key)
        if listed is not None:
            return await self._configure(listed, inputs)
        return await self._teardown(key, inputs)

    async def _report_invalid_entries(self) -> None:
        configmap = self._configmap()
        if configmap is None:
            return
        for error in self.parsed().errors:
            log.warning("ConfigMap %s: %s", names.INSTANCES_CONFIGMAP, error)
            await self.hosts.recorder.emit_event(
                kube.ref_of(configmap),
                "Warning",
                names.EventReason.INVALID_INSTANCE,
                f"entry {error.entry!r} ignored: {error.reason}",
            )

    async def _configure(
        self, listed: instances.Instance, inputs: instance_mod.Inputs
    ) -> controller_mod.Result | None:
        instance = instance_mod.Instance(
            address=listed.address, username=listed.username, origin=instance_mod.Origin.BYOH
        )
        configmap = self._configmap()
        return await self.hosts.converge(
            instance,
            inputs,
            subject=f"instance {listed.address}",
            ref=kube.ref_of(configmap) if configmap is not None else None,
            setup_reason=names.EventReason.INSTANCE_SETUP,
            failure_reason=names.EventReason.INSTANCE_SETUP_FAILURE,
        )

    async def _teardown(
        self, address: str, inputs: instance_mod.Inputs
    ) -> controller_mod.Result | None:
        node = next(
            (
                n
                for n in self.nodes.store.by_index(node_mod.ANNOTATED_ADDRESS_INDEX, address)
                if _is_byoh(n)
            ),
            None,
        )
        if node is None:
            self.hosts.forget_host(address)
            return None
        instance = hosts_mod.instance_of_node(
            node, instance_mod.Origin.BYOH, self.hosts.settings.default_username
        )
        if instance is None:
            return None
        try:
            teardown = await self.hosts.deconfigure_instance(instance, inputs)
        except drain.DrainTimeoutError as exc:
            log.warning("instance %s: %s", address, exc)
            await self.hosts.recorder.emit_event(
                kube.ref_of(node), "Warning", names.EventReason.INSTANCE_TEARDOWN_FAILURE, str(exc)
            )
            return controller_mod.Result(requeue=True)
        message = f"instance {address} removed: node {teardown.node_name} drained ({teardown.pods_evicted} pods evicted) and deleted"
        if teardown.host_problem:
            message += f"; the host itself was not cleaned: {teardown.host_problem}"
        log.info("%s", message)
        configmap = self._configmap()
        target = kube.ref_of(configmap) if configmap is not None else kube.ref_of(node)
        await self.hosts.recorder.emit_event(
            target,
            "Warning" if teardown.host_problem else "Normal",
            names.EventReason.INSTANCE_TEARDOWN,
            message,
        )
        return None


def setup(manager: manager_mod.Manager, hosts: hosts_mod.Hosts) -> controller_mod.Controller:
    """Register the listed-instances controller and its watches on ``manager``."""
    settings = hosts.settings
    configmaps = manager.informer(ConfigMap, namespace=settings.namespace)
    nodes = manager.informer(Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS})
    reconciler = InstancesReconciler(hosts, configmaps, nodes)
    controller = manager.controller(
        "instances",
        reconciler.reconcile,
        workers=hosts_mod.worker_count(settings),
        backoff_base=1.0,
        backoff_max=settings.retry_max,
    )

    def is_instances_configmap(event: informer_mod.Event[Any]) -> bool:
        return bool(event.obj.metadata and event.obj.metadata.name == names.INSTANCES_CONFIGMAP)

    controller.watch_events(configmaps, reconciler.keys_for_configmap, is_instances_configmap)
    controller.watch(nodes, reconciler.keys_for_node)
    for source in hosts.ca_sources:
        controller.watch(source, reconciler.keys_for_client_ca, hosts_mod.ca_changed)
    if hosts.exporter_secrets is not None:  # a new exporter CA: every host gets a certificate
        controller.watch(
            hosts.exporter_secrets, reconciler.keys_for_client_ca, hosts_mod.ca_changed
        )
    # issue 11 (rekey): a new private key, or the trusted keys written: every host re-keys.
    controller.watch(hosts.private_keys, reconciler.keys_for_client_ca, hosts_mod.ca_changed)
    if hosts.trusted_keys is not None:
        controller.watch(hosts.trusted_keys, reconciler.keys_for_client_ca, hosts_mod.ca_changed)
    return controller
