"""The Node of an instance: finding it, judging it, waiting for it, labelling it.

Pure judgements (:func:`match_node`, :func:`is_up_to_date`, :func:`node_is_ready`,
:func:`node_metadata_patch`) are unit-tested; the waits poll the API server with a deadline and
say what they wait for in the progress messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from lightkube.resources.core_v1 import Node

from wmco import kube, names
from wmco.nodeconfig import hostkeys
from wmco.nodeconfig.instance import (
    ConfigurationError,
    Inputs,
    Instance,
    Origin,
    Progress,
    Step,
)
from wmco.windows import ssh

POLL_INTERVAL = 1.0
"""Seconds between two reads of a Node while waiting for it."""

READY_HINT = "see the kubelet log on the host (C:\\var\\log\\kubelet) and pending CSRs"
"""What to look at when a node does not become Ready."""


def annotations_of(node: Node | None) -> dict[str, str]:
    """The node's annotations (empty when it has none or is ``None``)."""
    return dict((node.metadata.annotations if node and node.metadata else None) or {})


def is_up_to_date(
    node: Node | None, version: str, pub_key_hash: str, client_ca_hash: str | None = None
) -> bool:
    """Whether a node was fully configured by this version, key and client CA (no SSH needed).

    Args:
        node: The instance's node, if any.
        version: The operator's version.
        pub_key_hash: The current key's ``pub-key-hash``.
        client_ca_hash: The current kubelet client CA's digest; ``None`` (no usable bundle
            right now) leaves the CA out of the comparison, so a broken bundle does not send every
            host into a failing reconfiguration.
    """
    annotations = annotations_of(node)
    if node is None or node.metadata is None:
        return False
    return (
        annotations.get(names.VERSION_ANNOTATION) == version
        and annotations.get(names.PUB_KEY_HASH_ANNOTATION) == pub_key_hash
        and (
            client_ca_hash is None
            or annotations.get(names.KUBELET_CA_HASH_ANNOTATION) == client_ca_hash
        )
    )


def node_is_ready(node: Node | None) -> bool:
    """Whether the node's Ready condition is True."""
    conditions = (node.status.conditions if node and node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def ready_message(node: Node | None) -> str | None:
    """The message of the node's Ready condition (why it is not Ready), if any."""
    conditions = (node.status.conditions if node and node.status else None) or []
    return next((c.message for c in conditions if c.type == "Ready" and c.message), None)


def node_addresses(node: Node) -> set[str]:
    """Every address the node reports."""
    return {a.address for a in (node.status.addresses if node.status else None) or []}


def match_node(nodes: Iterable[Node], instance: Instance) -> Node | None:
    """The Node of an instance among ``nodes``: annotated with its address, else reporting it."""
    candidates = list(nodes)
    for node in candidates:
        if annotations_of(node).get(names.INSTANCE_ADDRESS_ANNOTATION) == instance.address:
            return node
    for node in candidates:
        if instance.address in node_addresses(node):
            return node
    return None


async def find_node(client: kube.Client, instance: Instance) -> Node | None:
    """The Node of an instance, read fresh from the API server."""
    result = await kube.list_objects(client, Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS})
    return match_node(result.items, instance)


def node_metadata_patch(
    instance: Instance,
    inputs: Inputs,
    host_key: ssh.HostKey | None,
    *,
    exporter_cert: str | None = None,
    pub_key_hash: str | None = None,
) -> dict[str, Any]:
    """The labels and annotations a configured node carries (a merge patch).

    ``exporter_cert`` is the record of windows_exporter's serving certificate on the host
    (:class:`wmco.cluster.exporterca.ServingRecord`), when the flow set one up.
    ``pub_key_hash`` is the hash of the key the host accepted, when not the current one (a
    Machine booted from the user data of before a key rotation: it is re-keyed next).
    """
    labels: dict[str, str | None] = {names.WORKER_ROLE_LABEL: ""}
    if instance.origin is Origin.BYOH:
        labels[names.BYOH_LABEL] = names.TRUE
    annotations: dict[str, str | None] = {
        names.VERSION_ANNOTATION: inputs.version,
        names.DESIRED_VERSION_ANNOTATION: inputs.version,
        names.PUB_KEY_HASH_ANNOTATION: pub_key_hash or inputs.pub_key_hash,
        names.USERNAME_ANNOTATION: instance.username,
        names.INSTANCE_ADDRESS_ANNOTATION: instance.address,
    }
    if inputs.client_ca_hash is not None:
        annotations[names.KUBELET_CA_HASH_ANNOTATION] = inputs.client_ca_hash
    if instance.machine:
        annotations[names.MACHINE_ANNOTATION] = instance.machine
    if exporter_cert is not None:
        annotations[names.EXPORTER_CERT_ANNOTATION] = exporter_cert
    if host_key is not None:
        annotations.update(hostkeys.node_annotations(host_key))
    return {"metadata": {"labels": labels, "annotations": annotations}}


async def wait_for_annotation(
    client: kube.Client,
    instance: Instance,
    node_name: str,
    annotation: str,
    *,
    timeout: float,
    progress: Progress,
    step: Step,
) -> str:
    """Wait until the Node exists and carries ``annotation``; return its value.

    Raises:
        ConfigurationError: Not so before the deadline (the message says which part is missing).
    """
    deadline = time.monotonic() + timeout
    await progress(step, f"waiting for node {node_name} and its {annotation} annotation")
    while True:
        node = await kube.get(client, Node, node_name)
        value = annotations_of(node).get(annotation)
        if value:
            return value
        if time.monotonic() > deadline:
            state = "is not registered" if node is None else f"has no {annotation} annotation"
            raise ConfigurationError(
                instance.address,
                step,
                f"node {node_name} {state} after {timeout:.0f}s; the cluster's OVN-Kubernetes "
                f"allocates it for nodes labelled {names.OS_LABEL}={names.OS_LABEL_WINDOWS} when "
                "the hybrid overlay is enabled (hybridClusterNetwork)",
            )
        await asyncio.sleep(POLL_INTERVAL)


async def wait_for_ready(
    client: kube.Client,
    instance: Instance,
    node_name: str,
    *,
    timeout: float,
    progress: Progress,
    waiting: str,
    hint: str = READY_HINT,
) -> Node:
    """Wait until the Node reports Ready.

    Args:
        client: API client.
        instance: For messages.
        node_name: The node.
        timeout: Seconds.
        progress: Progress callback.
        waiting: What the node is waiting for (said once it is registered).
        hint: What to look at when it does not happen (ends the error message).

    Raises:
        ConfigurationError: Not Ready before the deadline (with the node's own reason).
    """
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        node = await kube.get(client, Node, node_name)
        if node is not None and not announced:
            await progress(Step.NODE_READY, f"node {node_name} registered; {waiting}")
            announced = True
        if node_is_ready(node):
            assert node is not None
            return node
        if time.monotonic() > deadline:
            state = "not registered" if node is None else "registered but not Ready"
            reason = ready_message(node)
            raise ConfigurationError(
                instance.address,
                Step.NODE_READY,
                f"node {node_name} {state} after {timeout:.0f}s"
                + (f" ({reason})" if reason else "")
                + f"; {hint}",
            )
        await asyncio.sleep(POLL_INTERVAL)
