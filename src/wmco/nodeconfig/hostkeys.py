"""Where pinned SSH host keys live: a ConfigMap before the Node exists, Node annotations after.

The first connection to an instance trusts the key it presents (there is no other source of truth
for a freshly booted VM) and records it at once in the ConfigMap ``windows-ssh-host-keys`` of the
operator namespace, keyed by the instance address. Every later connection must present that key;
a different one is refused. Once the instance's Node exists, the key moves to the Node's
``ssh-host-key`` / ``ssh-host-key-type`` annotations (the reference operator's names) and the
ConfigMap entry is removed.

The ConfigMap is one object that every joining host writes twice (the entry, then its removal).
Hundreds of hosts joining at once would send hundreds of concurrent PATCHes of one growing
object, which the API server answers slower and slower (timeouts were measured at 500 hosts).
The writes of one operator are therefore grouped (:class:`_Writer`): while one PATCH is in
flight, the entries that arrive meanwhile wait, and go together in the next one. Each caller
still returns only once its own entry is stored.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

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


class _Writer:
    """Group commit of the ConfigMap's entries: one PATCH in flight, the rest batched behind it."""

    def __init__(self, client: kube.Client, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._pending: dict[str, str | None] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._lock = asyncio.Lock()
        self.patches = 0
        """PATCH or create requests sent (what a test reads to see the grouping)."""

    async def write(self, address: str, entry: str | None) -> None:
        """Store ``entry`` for ``address`` (``None``: remove it); return once it is stored.

        Raises:
            kube.KubeError: The request that carried the entry failed.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[address] = entry
        self._waiters.append(done)
        async with self._lock:
            if not done.done():  # nobody took this entry along yet: send what is pending
                batch, waiters = self._pending, self._waiters
                self._pending, self._waiters = {}, []
                try:
                    await self._send(batch)
                except BaseException as exc:
                    failure = (
                        kube.TransportError(f"the write of {names.SSH_HOST_KEYS_CONFIGMAP} stopped")
                        if isinstance(exc, asyncio.CancelledError)
                        else exc
                    )
                    for waiter in waiters:
                        if waiter is not done and not waiter.done():
                            waiter.set_exception(failure)
                    raise
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        await done

    async def _patch(self, batch: dict[str, str | None]) -> ConfigMap | None:
        """One merge PATCH of the entries (``None`` removes one); ``None`` if there is no map."""
        self.patches += 1
        return await kube.patch(
            self._client,
            ConfigMap,
            names.SSH_HOST_KEYS_CONFIGMAP,
            {"data": batch},
            namespace=self._namespace,
        )

    async def _send(self, batch: dict[str, str | None]) -> None:
        patched = await self._patch(batch)
        added = {address: entry for address, entry in batch.items() if entry is not None}
        if patched is not None or not added:
            return  # stored; or only removals from a ConfigMap that does not exist
        try:
            self.patches += 1
            await kube.create(
                self._client,
                ConfigMap(
                    metadata=ObjectMeta(
                        name=names.SSH_HOST_KEYS_CONFIGMAP,
                        namespace=self._namespace,
                        labels={names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE},
                    ),
                    data=added,
                ),
            )
        except kube.AlreadyExists:
            await self._patch(batch)  # another writer created it meanwhile


_WRITERS: weakref.WeakKeyDictionary[kube.Client, dict[str, _Writer]] = weakref.WeakKeyDictionary()


def writer(client: kube.Client, namespace: str) -> _Writer:
    """The one writer of the ConfigMap for this client and namespace."""
    per_namespace = _WRITERS.setdefault(client, {})
    found = per_namespace.get(namespace)
    if found is None:
        found = per_namespace[namespace] = _Writer(client, namespace)
    return found


async def remember(client: kube.Client, namespace: str, address: str, key: sshkeys.HostKey) -> None:
    """Record a key trusted on first use in the ConfigMap (created on demand)."""
    await writer(client, namespace).write(address, _entry(key))
    log.info("pinned SSH host key %s of instance %s on first use", key.fingerprint, address)


async def forget(client: kube.Client, namespace: str, address: str) -> None:
    """Remove the instance's ConfigMap entry (after migration to the Node, or on removal)."""
    await writer(client, namespace).write(address, None)
