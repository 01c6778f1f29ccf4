r"""Deconfigure ONE Windows instance: the reverse of :mod:`wmco.nodeconfig.configure`.

Cordon and drain the Node through the Eviction API, stop and delete the managed Windows services
(dependents first), remove what the network profile made (on ``ovn-hybrid``: the ``VIPEndpoint``
and the two hybrid-overlay HNS networks, base network first as the reference operator does;
removing the last one that holds the vSwitch drops the connection, which the runner redials),
remove the CNI state (``C:\k\cni\config\cni.conf``, ``C:\var\lib\cni``) and the files the
operator put there, then delete the Node and whatever the operator kept about the instance
(bootstrap tokens, pinned host key).

Cleaning the host itself is best effort: an instance that is already gone (its Machine deleted,
the VM destroyed) or no longer answers must not keep its Node in the cluster forever. What could
not be done is reported in the :class:`Teardown` so the caller can say so in an Event.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final

from lightkube.resources.core_v1 import Node

from wmco import kube, names, settings
from wmco.nodeconfig import bootstrap, drain, hostkeys, servicectl
from wmco.nodeconfig import node as node_mod
from wmco.nodeconfig import runner as runner_mod
from wmco.nodeconfig.instance import ConfigurationError, Inputs, Instance, Step
from wmco.windows import (
    batch,
    commands,
    layout,
    planner,
    probeanswers,
    services,
    sshfailures,
    sshkeys,
)

log = logging.getLogger(__name__)

HNS_NETWORKS: Final = (names.HYBRID_OVERLAY_BASE_NETWORK, names.HYBRID_OVERLAY_NETWORK)
"""The networks ``ovn-hybrid`` made (through hybrid-overlay-node), in removal order."""


@dataclasses.dataclass(frozen=True, slots=True)
class Teardown:
    """What :func:`deconfigure` did."""

    node_name: str | None
    pods_evicted: int
    host_cleaned: bool
    host_problem: str | None
    node_deleted: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Removal:
    """One removal command of the host clean-up."""

    step: Step
    command: str
    what: str


def removals(profile: settings.NetworkProfile) -> tuple[Removal, ...]:
    """The network and file removals of a host of ``profile``, in order (pure)."""
    steps: list[Removal] = []
    if profile is settings.NetworkProfile.OVN_HYBRID:
        steps.append(
            Removal(
                Step.REMOVE_NETWORK,
                commands.remove_hns_endpoints(names.VIP_ENDPOINT),
                f"removal of HNS endpoint {names.VIP_ENDPOINT}",
            )
        )
        steps += [
            Removal(
                Step.REMOVE_NETWORK,
                commands.remove_hns_networks(network),
                f"removal of HNS network {network}",
            )
            for network in HNS_NETWORKS
        ]
    paths = (
        layout.OVN_CNI_CONFIG,
        layout.CNI_STATE_DIR,
        layout.HNS_MODULE,
        *sorted(layout.REMOVABLE_DIRECTORIES, key=len, reverse=True),
    )
    steps += [Removal(Step.REMOVE_FILES, commands.remove_path(p), f"removal of {p}") for p in paths]
    return tuple(steps)


async def _clean_host(
    client: kube.Client, instance: Instance, inputs: Inputs, node: Node | None
) -> None:
    # A host that is gone must not hold the teardown for the boot deadline.
    runner = await runner_mod.connect(
        client, instance, inputs, node, within=inputs.settings.ssh_connect_timeout
    )
    try:
        runner.step = Step.REMOVE_SERVICES
        look = await runner.check(
            commands.drift_probe(services.ALL_MANAGED_SERVICES, (), hns=False),
            "look at the host's services",
        )
        observed = runner_mod.parsed(runner, probeanswers.parse_probe, look).services
        plan = planner.plan_service_removal(observed)
        stops = [action for action in plan if action.kind is planner.ActionKind.STOP]
        await servicectl.apply(runner, stops)  # each followed by its wait until STOPPED
        directories = sorted(inputs.payload.destination_directories, key=len, reverse=True)
        stages = (
            *servicectl.stages([action for action in plan if action not in stops]),
            *(
                batch.Stage(removal.what, (removal.command,))
                for removal in removals(inputs.settings.network_profile)
            ),
            *(
                batch.Stage(f"removal of {directory}", (commands.remove_path(directory),))
                for directory in directories
            ),
        )
        # ONE script for the rest (issue 12 §3); removing the last network may drop the
        # connection: the runner sends the script again, and every stage is idempotent.
        await runner.run_stages(stages, "removal of services, networks and files")
    finally:
        await runner.close()


async def deconfigure(
    client: kube.Client,
    instance: Instance,
    inputs: Inputs,
    *,
    delete_node: bool = True,
    clean_host: bool = True,
) -> Teardown:
    """Drain the instance's Node, clean the host (best effort) and delete the Node.

    Args:
        client: API client.
        instance: The instance being removed.
        inputs: Cluster-wide inputs (key, payload, settings).
        delete_node: Delete the Node at the end (the host is gone for good).
        clean_host: Try to remove services, networks and files from the host.

    Raises:
        drain.DrainTimeoutError: Pods could not be evicted in time (retry later).
    """
    settings_ = inputs.settings
    node = await node_mod.find_node(client, instance)
    node_name = node.metadata.name if node and node.metadata else None
    evicted = 0
    if node_name:
        evicted = await drain.drain(client, node_name, timeout=settings_.drain_timeout)
    problem: str | None = None
    cleaned = False
    if clean_host:
        try:
            await _clean_host(client, instance, inputs, node)
            cleaned = True
        except (sshfailures.SshError, sshkeys.SshKeyError, ConfigurationError) as exc:
            problem = str(exc)
            log.warning("instance %s: host not cleaned: %s", instance.address, problem)
    deleted = False
    if delete_node and node_name:
        deleted = await kube.delete(client, Node, node_name)
    await bootstrap.delete_account(client, instance.address, settings_)
    if delete_node:
        await hostkeys.forget(client, settings_.namespace, instance.address)
    return Teardown(
        node_name=node_name,
        pods_evicted=evicted,
        host_cleaned=cleaned,
        host_problem=problem,
        node_deleted=deleted,
    )
