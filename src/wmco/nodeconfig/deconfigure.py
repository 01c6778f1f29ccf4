"""Deconfigure ONE Windows instance: the reverse of :mod:`wmco.nodeconfig.configure`.

Cordon and drain the Node through the Eviction API, stop and delete the managed Windows services
(dependents first), remove the files the operator put there, then delete the Node and whatever the
operator kept about the instance (bootstrap tokens, pinned host key). Cleaning the host itself is
best effort: an instance that is already gone (its Machine deleted, the VM destroyed) or no longer
answers must not keep its Node in the cluster forever. What could not be done is reported in the
:class:`Teardown` so the caller can say so in an Event.
"""

from __future__ import annotations

import dataclasses
import logging

from lightkube.resources.core_v1 import Node

from wmco import kube
from wmco.nodeconfig import bootstrap, configure, drain, hostkeys
from wmco.windows import commands, services, ssh

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Teardown:
    """What :func:`deconfigure` did."""

    node_name: str | None
    pods_evicted: int
    host_cleaned: bool
    host_problem: str | None
    node_deleted: bool


async def _clean_host(
    client: kube.Client, instance: configure.Instance, inputs: configure.Inputs, node: Node | None
) -> None:
    settings = inputs.settings
    pinned = await hostkeys.pinned(client, settings.namespace, instance.address, node)
    host = ssh.WindowsHost(
        instance.address,
        instance.username,
        ssh.load_ssh_key(inputs.private_key_pem),
        settings=settings,
        pinned_host_key=pinned,
        port=instance.ssh_port,
    )
    await host.connect(within=settings.ssh_connect_timeout)
    runner = configure._Runner(host, instance.address)
    runner.step = configure.Step.SERVICES
    try:
        observed = await configure.observe_services(runner)
        await configure.apply_service_actions(runner, services.plan_service_removal(observed))
        directories = sorted(
            {*services.REQUIRED_DIRECTORIES, *inputs.payload.destination_directories},
            key=len,
            reverse=True,
        )
        for directory in directories:
            await runner.run(commands.remove_path(directory), f"removal of {directory}")
    finally:
        await host.close()


async def deconfigure(
    client: kube.Client,
    instance: configure.Instance,
    inputs: configure.Inputs,
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
        clean_host: Try to remove services and files from the host.

    Raises:
        drain.DrainTimeoutError: Pods could not be evicted in time (retry later).
    """
    settings = inputs.settings
    node = await configure.find_node(client, instance)
    node_name = node.metadata.name if node and node.metadata else None
    evicted = 0
    if node_name:
        evicted = await drain.drain(client, node_name, timeout=settings.drain_timeout)
    problem: str | None = None
    cleaned = False
    if clean_host:
        try:
            await _clean_host(client, instance, inputs, node)
            cleaned = True
        except (ssh.SshError, ssh.SshKeyError, configure.ConfigurationError) as exc:
            problem = str(exc)
            log.warning("instance %s: host not cleaned: %s", instance.address, problem)
    deleted = False
    if delete_node and node_name:
        deleted = await kube.delete(client, Node, node_name)
    await bootstrap.delete_tokens(client, instance.address)
    if delete_node:
        await hostkeys.forget(client, settings.namespace, instance.address)
    return Teardown(
        node_name=node_name,
        pods_evicted=evicted,
        host_cleaned=cleaned,
        host_problem=problem,
        node_deleted=deleted,
    )
