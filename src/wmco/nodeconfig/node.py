"""The Node of an instance: finding it, judging it, waiting for it, labelling it.

Pure judgements (:func:`match_node`, :func:`is_up_to_date`, :func:`node_is_ready`,
:func:`node_metadata_patch`) are unit-tested; the waits have a deadline and say what they wait
for in the progress messages.

**No request per host per second, no list per host** (issue 12 §5). Where the operator runs, its
shared informer of the Windows Nodes is the source: :func:`index_nodes` indexes it by address
(the ``instance-address`` annotation, and every address a Node reports), so :func:`find_node`
is a dictionary lookup, and the waits sleep on the informer until the one Node changes
(:meth:`wmco.runtime.informer.Informer.wait_until`), sending nothing. The flow gets that informer
either as the ``nodes`` argument or, for callers that do not pass it along (the configure flow is
called with the client only), from :func:`using_nodes`, a context the host controllers enter
around each flow. Without either (a tool, a test driving the flow alone), :func:`find_node` lists
the Windows Nodes once, and a wait runs its own list + watch of the one Node (a
``metadata.name`` field selector): two requests for the whole wait, whatever its length.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
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
from wmco.runtime import informer as informer_mod
from wmco.windows import sshkeys

NodeInformer = informer_mod.Informer[Node]
"""The operator's informer of the Windows Nodes (label ``kubernetes.io/os=windows``)."""

ANNOTATED_ADDRESS_INDEX = "wmco-instance-address"
"""Index of the Node informer: the ``instance-address`` annotation the operator wrote."""

REPORTED_ADDRESS_INDEX = "wmco-reported-address"
"""Index of the Node informer: every address in the Node's status."""

_NODES: contextvars.ContextVar[NodeInformer | None] = contextvars.ContextVar(
    "wmco_nodes", default=None
)

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


def annotated_address(node: Node) -> list[str]:
    """Index function: the node's ``instance-address`` annotation, if any."""
    address = annotations_of(node).get(names.INSTANCE_ADDRESS_ANNOTATION)
    return [address] if address else []


def reported_addresses(node: Node) -> list[str]:
    """Index function: every address the node reports."""
    return sorted(node_addresses(node))


def index_nodes(nodes: NodeInformer) -> NodeInformer:
    """Add the address indexes :func:`cached_node` needs to the Node informer; return it."""
    nodes.add_index(ANNOTATED_ADDRESS_INDEX, annotated_address)
    nodes.add_index(REPORTED_ADDRESS_INDEX, reported_addresses)
    return nodes


def cached_node(nodes: NodeInformer, instance: Instance) -> Node | None:
    """:func:`match_node` over the informer's cache, through its address indexes (no scan).

    The informer must have been given :func:`index_nodes`.
    """
    for index in (ANNOTATED_ADDRESS_INDEX, REPORTED_ADDRESS_INDEX):
        found = nodes.store.by_index(index, instance.address)
        if found:
            return found[0]
    return None


@contextlib.contextmanager
def using_nodes(nodes: NodeInformer) -> Iterator[None]:
    """Within this context (and the tasks it starts), find and wait for Nodes in ``nodes``.

    ``nodes`` must be running and indexed (:func:`index_nodes`).
    """
    token = _NODES.set(nodes)
    try:
        yield
    finally:
        _NODES.reset(token)


def _informer(nodes: NodeInformer | None) -> NodeInformer | None:
    return nodes if nodes is not None else _NODES.get()


async def find_node(
    client: kube.Client, instance: Instance, *, nodes: NodeInformer | None = None
) -> Node | None:
    """The Node of an instance: from the operator's Node informer, else listed once.

    Args:
        client: API client (used only without an informer).
        instance: Whose Node.
        nodes: The indexed Node informer; by default the one of :func:`using_nodes`, if any.
    """
    informer = _informer(nodes)
    if informer is not None and informer.has_synced:
        return cached_node(informer, instance)
    result = await kube.list_objects(client, Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS})
    return match_node(result.items, instance)


@contextlib.asynccontextmanager
async def watching_node(
    client: kube.Client, node_name: str, deadline: float, *, nodes: NodeInformer | None = None
) -> AsyncIterator[NodeInformer]:
    """The informer to wait for one Node on.

    The operator's (``nodes``, else the one of :func:`using_nodes`); without one, a list + watch
    of that Node alone (a ``metadata.name`` field selector) for the duration of the context.
    """
    informer = _informer(nodes)
    if informer is not None:
        yield informer
        return
    remaining = max(1, int(deadline - time.monotonic()) + 1)
    single = informer_mod.Informer(
        client, Node, fields={"metadata.name": node_name}, watch_timeout=min(remaining, 300)
    )
    running = asyncio.create_task(single.run(), name=f"watch node {node_name}")
    try:
        yield single
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def wait_for_node(
    client: kube.Client,
    node_name: str,
    condition: Callable[[Node | None], bool],
    deadline: float,
    *,
    nodes: NodeInformer | None = None,
) -> tuple[Node | None, bool]:
    """Wait until the Node satisfies ``condition`` (see :func:`watching_node`).

    Args:
        client: API client (used only without an informer).
        node_name: The Node.
        condition: Called with the Node, or ``None`` while it is not registered.
        deadline: A :func:`time.monotonic` moment.
        nodes: The operator's Node informer; by default the one of :func:`using_nodes`, if any.

    Returns:
        The Node as last seen (``None``: not registered) and whether ``condition`` held.
    """
    async with watching_node(client, node_name, deadline, nodes=nodes) as informer:
        return await informer.wait_until(node_name, condition, deadline)


def node_metadata_patch(
    instance: Instance,
    inputs: Inputs,
    host_key: sshkeys.HostKey | None,
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
    nodes: NodeInformer | None = None,
) -> str:
    """Wait until the Node exists and carries ``annotation``; return its value.

    Woken by the Node's changes (see the module docstring), not by a timer.

    Args:
        client: API client (used only without an informer).
        instance: For messages.
        node_name: The node.
        annotation: The annotation awaited.
        timeout: Seconds.
        progress: Progress callback.
        step: The step messages and errors name.
        nodes: The operator's Node informer; by default the one of :func:`using_nodes`, if any.

    Raises:
        ConfigurationError: Not so before the deadline (the message says which part is missing).
    """
    deadline = time.monotonic() + timeout
    await progress(step, f"waiting for node {node_name} and its {annotation} annotation")
    node, found = await wait_for_node(
        client, node_name, lambda n: bool(annotations_of(n).get(annotation)), deadline, nodes=nodes
    )
    if found:
        return annotations_of(node)[annotation]
    state = "is not registered" if node is None else f"has no {annotation} annotation"
    raise ConfigurationError(
        instance.address,
        step,
        f"node {node_name} {state} after {timeout:.0f}s; the cluster's OVN-Kubernetes "
        f"allocates it for nodes labelled {names.OS_LABEL}={names.OS_LABEL_WINDOWS} when "
        "the hybrid overlay is enabled (hybridClusterNetwork)",
    )


async def wait_for_ready(
    client: kube.Client,
    instance: Instance,
    node_name: str,
    *,
    timeout: float,
    progress: Progress,
    waiting: str,
    hint: str = READY_HINT,
    nodes: NodeInformer | None = None,
) -> Node:
    """Wait until the Node reports Ready (woken by its changes, not by a timer).

    Args:
        client: API client.
        instance: For messages.
        node_name: The node.
        timeout: Seconds.
        progress: Progress callback.
        waiting: What the node is waiting for (said once it is registered).
        hint: What to look at when it does not happen (ends the error message).
        nodes: The operator's Node informer; by default the one of :func:`using_nodes`, if any.

    Raises:
        ConfigurationError: Not Ready before the deadline (with the node's own reason).
    """
    deadline = time.monotonic() + timeout
    async with watching_node(client, node_name, deadline, nodes=nodes) as informer:
        node, registered = await informer.wait_until(node_name, lambda n: n is not None, deadline)
        ready = False
        if registered:
            await progress(Step.NODE_READY, f"node {node_name} registered; {waiting}")
            node, ready = await informer.wait_until(node_name, node_is_ready, deadline)
    if ready:
        assert node is not None
        return node
    state = "not registered" if node is None else "registered but not Ready"
    raise not_ready(
        instance, Step.NODE_READY, node, f"node {node_name} {state} after {timeout:.0f}s", hint
    )


def not_ready(
    instance: Instance, step: Step, node: Node | None, summary: str, hint: str = READY_HINT
) -> ConfigurationError:
    """The error of a wait for Ready that ran out: ``summary``, the node's own reason, ``hint``."""
    reason = ready_message(node)
    return ConfigurationError(
        instance.address, step, summary + (f" ({reason})" if reason else "") + f"; {hint}"
    )
