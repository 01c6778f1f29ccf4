"""The pinned-key ConfigMap under many hosts at once: entries grouped into few requests, none lost.

Hundreds of hosts joining at once each add an entry to ``windows-ssh-host-keys`` and later remove
it; one PATCH per host of one growing object timed out at 500 hosts. The operator's writes go
in groups (``hostkeys._Writer``); each caller still returns only once its entry is stored.
"""

from __future__ import annotations

import asyncio

import asyncssh
import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import ConfigMap

from wmco import kube as kapi
from wmco import names
from wmco.nodeconfig import hostkeys
from wmco.windows import sshkeys

pytestmark = [pytest.mark.integration]

HOSTS = 60


def key() -> sshkeys.HostKey:
    return sshkeys.HostKey.from_ssh_key(asyncssh.generate_private_key("ssh-ed25519"))


async def stored(kube: AsyncClient, namespace: str) -> dict[str, str]:
    found = await kube.get(ConfigMap, names.SSH_HOST_KEYS_CONFIGMAP, namespace=namespace)
    return dict(found.data or {})


async def test_many_hosts_at_once_are_all_pinned_in_a_few_requests_and_all_forgotten(
    kube: AsyncClient, namespace: str
) -> None:
    addresses = [f"10.9.0.{i}" for i in range(1, HOSTS + 1)]
    keys = {address: key() for address in addresses}
    writer = hostkeys.writer(kube, namespace)
    # The ConfigMap does not exist yet: the first group creates it.
    await asyncio.gather(*(hostkeys.remember(kube, namespace, a, keys[a]) for a in addresses))
    remembered = writer.patches
    data = await stored(kube, namespace)
    assert data == {a: f"{keys[a].key_type} {keys[a].b64}" for a in addresses}
    assert remembered < HOSTS / 4, f"{remembered} requests for {HOSTS} entries: not grouped"
    for address in addresses:  # what the next connection reads back
        assert await hostkeys.pinned(kube, namespace, address, None) == keys[address]

    await asyncio.gather(*(hostkeys.forget(kube, namespace, a) for a in addresses[1:]))
    assert await stored(kube, namespace) == {addresses[0]: data[addresses[0]]}
    assert writer.patches - remembered < HOSTS / 4


async def test_forgetting_when_nothing_was_pinned_creates_nothing(
    kube: AsyncClient, namespace: str
) -> None:
    await hostkeys.forget(kube, namespace, "10.9.1.1")
    assert (
        await kapi.get(kube, ConfigMap, names.SSH_HOST_KEYS_CONFIGMAP, namespace=namespace) is None
    )
