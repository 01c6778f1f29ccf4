"""Where pinned SSH host keys live: a ConfigMap before the Node exists, Node annotations after.

The first connection to an instance trusts the key it presents (there is no other source of truth
for a freshly booted VM) and records it at once in the ConfigMap ``windows-ssh-host-keys`` of the
operator namespace, keyed by the instance address. Every later connection must present that key;
a different one is refused. Once the instance's Node exists, the key moves to the Node's
``ssh-host-key`` / ``ssh-host-key-type`` annotations (the reference operator's names) and the
ConfigMap entry is removed.
"""

from __future__ import annotations

import logging

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Node

from wmco import kube, names
from wmco.windows import sshkeys

log = logging.getLogger(__name__)


def _entry(key: sshkeys.HostKey) -> str:
    return f"{key.key_type} {key.b64}"


def _parse_entry(value: str) -> sshkeys.HostKey | None:
    parts = value.split()
    if len(parts) != 2:
        return None
    try:
        return sshkeys.HostKey.from_annotation(parts[1], parts[0])
    except ValueError:
        return None


def from_node(node: Node | None) -> sshkeys.HostKey | None:
    """The key pinned on a Node's annotations, if any (an unreadable one counts as none)."""
    annotations = (node.metadata.annotations if node and node.metadata else None) or {}
    b64 = annotations.get(names.SSH_HOST_KEY_ANNOTATION)
    if not b64:
        return None
    try:
        return sshkeys.HostKey.from_annotation(
            b64, annotations.get(names.SSH_HOST_KEY_TYPE_ANNOTATION, "")
        )
    except ValueError:
        name = node.metadata.name if node and node.metadata else ""
        log.warning("node %s has an unreadable pinned host key", name)
        return None


def node_annotations(key: sshkeys.HostKey) -> dict[str, str]:
    """The annotations that pin ``key`` on a Node."""
    return {
        names.SSH_HOST_KEY_ANNOTATION: key.b64,
        names.SSH_HOST_KEY_TYPE_ANNOTATION: key.key_type,
    }


async def pinned(
    client: kube.Client, namespace: str, address: str, node: Node | None
) -> sshkeys.HostKey | None:
    """The key on record for the instance: the Node's, else the ConfigMap's."""
    on_node = from_node(node)
    if on_node is not None:
        return on_node
    store = await kube.get(client, ConfigMap, names.SSH_HOST_KEYS_CONFIGMAP, namespace=namespace)
    value = ((store.data if store else None) or {}).get(address)
    return _parse_entry(value) if value else None


async def remember(client: kube.Client, namespace: str, address: str, key: sshkeys.HostKey) -> None:
    """Record a key trusted on first use in the ConfigMap (created on demand)."""
    patched = await kube.patch(
        client,
        ConfigMap,
        names.SSH_HOST_KEYS_CONFIGMAP,
        {"data": {address: _entry(key)}},
        namespace=namespace,
    )
    if patched is not None:
        return
    try:
        await kube.create(
            client,
            ConfigMap(
                metadata=ObjectMeta(
                    name=names.SSH_HOST_KEYS_CONFIGMAP,
                    namespace=namespace,
                    labels={names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE},
                ),
                data={address: _entry(key)},
            ),
        )
    except kube.AlreadyExists:
        await kube.patch(
            client,
            ConfigMap,
            names.SSH_HOST_KEYS_CONFIGMAP,
            {"data": {address: _entry(key)}},
            namespace=namespace,
        )
    log.info("pinned SSH host key %s of instance %s on first use", key.fingerprint, address)


async def forget(client: kube.Client, namespace: str, address: str) -> None:
    """Remove the instance's ConfigMap entry (after migration to the Node, or on removal)."""
    await kube.patch(
        client,
        ConfigMap,
        names.SSH_HOST_KEYS_CONFIGMAP,
        {"data": {address: None}},
        namespace=namespace,
    )
