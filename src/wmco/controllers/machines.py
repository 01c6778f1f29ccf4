"""Windows Machines (``machine.openshift.io/v1beta1``) → configured nodes.

A Machine is ours when it carries ``machine.openshift.io/os-id: Windows`` and is not opted out with
``windowsmachineconfig.openshift.io/ignore=true``. Once its phase is Provisioned or Running and it
has an IPv4 InternalIP, the instance behind it is configured into a node (Event ``MachineSetup``,
or ``MachineSetupFailure`` with the reason, retried with backoff). A Machine being deleted, or gone,
has its node drained, cleaned (best effort) and deleted, where no other controller did it already.

Node events map back to their Machine (through the node's ``machine.openshift.io/machine``
annotation, or its address) so that a node that stops being Ready is looked at again. Both ways
are index lookups (Machines by InternalIP, Nodes by Machine annotation): a Node's heartbeat costs
the same at 500 Machines as at one.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from lightkube.resources.core_v1 import Node

from wmco import kube, names
from wmco.controllers import hosts as hosts_mod
from wmco.nodeconfig import drain
from wmco.nodeconfig import instance as instance_mod
from wmco.nodeconfig import node as node_mod
from wmco.runtime import controller as controller_mod
from wmco.runtime import informer as informer_mod
from wmco.runtime import keys
from wmco.runtime import manager as manager_mod

log = logging.getLogger(__name__)

MACHINE_GROUP = "machine.openshift.io"
MACHINE_VERSION = "v1beta1"
Machine = kube.namespaced_custom_resource(MACHINE_GROUP, MACHINE_VERSION, "Machine", "machines")
CONFIGURABLE_PHASES = ("Provisioned", "Running")

MACHINE_ADDRESS_INDEX = "wmco-machine-internal-ipv4"
"""Index of the Machine informer: the Machine's IPv4 InternalIP."""

NODE_MACHINE_INDEX = "wmco-node-machine"
"""Index of the Node informer: the ``machine.openshift.io/machine`` annotation."""


def _field(obj: Any, *path: str) -> Any:
    """Read a nested field of a generic resource (dicts all the way down) or ``None``."""
    current: Any = obj
    for part in path:
        if current is None:
            return None
        current = current.get(part) if isinstance(current, dict) else getattr(current, part, None)
    return current


def internal_ipv4(machine: Any) -> str | None:
    """The Machine's first IPv4 InternalIP, if any."""
    for address in _field(machine, "status", "addresses") or []:
        if address.get("type") != "InternalIP":
            continue
        try:
            return str(ipaddress.IPv4Address(address.get("address", "")))
        except ValueError:
            continue
    return None


def is_windows_machine(machine: Any) -> bool:
    """Labelled Windows and not opted out."""
    labels = (machine.metadata.labels if machine.metadata else None) or {}
    return (
        labels.get(names.MACHINE_OS_ID_LABEL) == names.MACHINE_OS_ID_WINDOWS
        and labels.get(names.IGNORE_LABEL) != names.TRUE
    )


def machine_address(machine: Any) -> list[str]:
    """Index function: the Machine's IPv4 InternalIP, if any."""
    address = internal_ipv4(machine)
    return [address] if address else []


def node_machine(node: Node) -> list[str]:
    """Index function: the Machine a Node's annotation names, if any."""
    machine = node_mod.annotations_of(node).get(names.MACHINE_ANNOTATION)
    return [machine] if machine else []


class MachinesReconciler:
    """Reconciles one Machine key (``namespace/name``)."""

    def __init__(
        self,
        hosts: hosts_mod.Hosts,
        machines: informer_mod.Informer[Any],
        nodes: informer_mod.Informer[Node],
    ) -> None:
        self.hosts = hosts
        self.machines = machines
        self.nodes = nodes
        machines.add_index(MACHINE_ADDRESS_INDEX, machine_address)
        nodes.add_index(NODE_MACHINE_INDEX, node_machine)

    def keys_for_node(self, obj: Any) -> Iterable[str]:
        """A node maps to its Machine: by annotation, else by a Machine with its address."""
        node: Node = obj
        annotations = (node.metadata.annotations if node.metadata else None) or {}
        if annotations.get(names.MACHINE_ANNOTATION):
            return (annotations[names.MACHINE_ANNOTATION],)
        found = {
            keys.key_of(machine)
            for address in node_mod.node_addresses(node)
            for machine in self.machines.store.by_index(MACHINE_ADDRESS_INDEX, address)
        }
        return sorted(found)

    def keys_for_client_ca(self, obj: Any) -> Iterable[str]:
        """A changed kubelet client CA concerns every Windows Machine."""
        return sorted(keys.key_of(machine) for machine in self.machines.store.objects())

    def _node_of(self, machine_key: str) -> Node | None:
        found = self.nodes.store.by_index(NODE_MACHINE_INDEX, machine_key)
        return found[0] if found else None

    async def reconcile(self, key: str) -> controller_mod.Result | None:
        """Configure the Machine's instance, or tear it down when the Machine goes."""
        machine = self.machines.store.get(key)
        inputs = await self.hosts.inputs()
        if inputs is None:
            log.info("machine %s: waiting for a usable private key Secret", key)
            return controller_mod.Result(requeue_after=10.0)
        if machine is None or machine.metadata.deletionTimestamp is not None:
            return await self._teardown(key, machine, inputs)
        if not is_windows_machine(machine):
            return None
        phase = _field(machine, "status", "phase")
        address = internal_ipv4(machine)
        if phase not in CONFIGURABLE_PHASES or address is None:
            return None
        instance = instance_mod.Instance(
            address=address,
            username=self.hosts.settings.default_username,
            origin=instance_mod.Origin.MACHINE,
            machine=key,
            provider_id=_field(machine, "spec", "providerID"),
        )
        return await self.hosts.converge(
            instance,
            inputs,
            subject=f"machine {machine.metadata.name}",
            ref=kube.ref_of(machine),
            setup_reason=names.EventReason.MACHINE_SETUP,
            failure_reason=names.EventReason.MACHINE_SETUP_FAILURE,
        )

    async def _teardown(
        self, key: str, machine: Any, inputs: instance_mod.Inputs
    ) -> controller_mod.Result | None:
        node = self._node_of(key)
        if node is None:
            self.hosts.forget_host(key)
            return None
        instance = hosts_mod.instance_of_node(
            node, instance_mod.Origin.MACHINE, self.hosts.settings.default_username
        )
        if instance is None:
            return None
        try:
            # The VM is going away with its Machine: clean it only while the Machine still exists.
            teardown = await self.hosts.deconfigure_instance(
                instance, inputs, clean_host=machine is not None
            )
        except drain.DrainTimeoutError as exc:
            log.warning("machine %s: %s", key, exc)
            return controller_mod.Result(requeue=True)
        log.info(
            "machine %s removed: node %s drained (%d pods evicted), deleted=%s",
            key,
            teardown.node_name,
            teardown.pods_evicted,
            teardown.node_deleted,
        )
        return None


def setup(manager: manager_mod.Manager, hosts: hosts_mod.Hosts) -> controller_mod.Controller:
    """Register the Machine controller and its watches on ``manager``."""
    settings = hosts.settings
    machines = manager.informer(
        Machine,
        namespace=settings.machine_api_namespace,
        labels={names.MACHINE_OS_ID_LABEL: names.MACHINE_OS_ID_WINDOWS},
    )
    nodes = manager.informer(Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS})
    reconciler = MachinesReconciler(hosts, machines, nodes)
    controller = manager.controller(
        "machines",
        reconciler.reconcile,
        workers=hosts_mod.worker_count(settings),
        backoff_base=1.0,
        backoff_max=settings.retry_max,
    )
    controller.watch(machines)
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
