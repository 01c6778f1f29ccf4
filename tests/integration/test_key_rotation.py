"""Key rotation without downtime: a new ``cloud-private-key`` re-keys every configured host.

Real control plane, the operator in-process (``test_operator.open_world``), strict simulated
hosts whose sshd reads ``administrators_authorized_keys`` on every new connection. The tests
change the Secret and watch: no Node ever leaves Ready, no service restarts, every host ends up
accepting the new key and refusing the old one, its Node carries the new ``pub-key-hash``, the
user data authorises only the new key, and the operator's own Secret keeps only the new key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event, Node, Secret
from lightkube.types import PatchType
from test_operator import World, open_world, private_key_pem, service_pids

from kube_helpers import eventually
from wmco import names, userdata
from wmco.cluster import trustedkeys
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost.host import WindowsHost

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_KEYS = "C:\\ProgramData\\ssh\\administrators_authorized_keys"


def key_hash(pem: bytes) -> str:
    return userdata.pub_key_hash(userdata.load_private_key(pem))


async def logs_in(host: WindowsHost, pem: bytes) -> bool:
    """Whether a NEW SSH connection with ``pem`` alone is accepted (and runs a command)."""
    try:
        async with asyncssh.connect(
            host.address,
            host.port,
            username="Administrator",
            client_keys=[asyncssh.import_private_key(pem)],
            known_hosts=None,
            agent_path=None,
            config=None,
            connect_timeout=5,
        ) as conn:
            return (await conn.run("hostname", check=False)).exit_status == 0
    except asyncssh.PermissionDenied:
        return False


class NodeWatch:
    """Every state of the Windows Nodes the API server reported during a test."""

    def __init__(self, kube: AsyncClient) -> None:
        self.kube = kube
        self.not_ready: list[str] = []
        self.hashes: dict[str, set[str]] = {}
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async for _, node in self.kube.watch(Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS}):
            assert node.metadata is not None and node.metadata.name is not None
            name = node.metadata.name
            conditions = (node.status.conditions if node.status else None) or []
            if not any(c.type == "Ready" and c.status == "True" for c in conditions):
                self.not_ready.append(name)
            value = (node.metadata.annotations or {}).get(names.PUB_KEY_HASH_ANNOTATION)
            if value:
                self.hashes.setdefault(name, set()).add(value)


@contextlib.asynccontextmanager
async def watching(kube: AsyncClient) -> AsyncIterator[NodeWatch]:
    watch = NodeWatch(kube)
    watch.task = asyncio.create_task(watch.run())
    try:
        yield watch
    finally:
        watch.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watch.task


@pytest.fixture
async def world(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path
) -> AsyncIterator[World]:
    async with open_world(control_plane, kube, tmp_path) as opened:
        yield opened


async def two_configured_hosts(world: World) -> list[WindowsHost]:
    hosts = [await world.boot_host(), await world.boot_host()]
    await world.list_instances({host.address: "username=Administrator" for host in hosts})
    for host in hosts:
        await world.wait_ready(host)
    return hosts


async def trusted_hashes(world: World) -> set[str]:
    secret = await world.kube.get(
        Secret, names.TRUSTED_PRIVATE_KEY_SECRET, namespace=world.settings.namespace
    )
    return {key.pub_key_hash for key in trustedkeys.stored_keys(secret)}


async def rotate(world: World) -> bytes:
    """Put a new key in ``cloud-private-key`` (once the operator keeps the current one)."""
    old = world.key_pem

    async def kept() -> bool:
        return await trusted_hashes(world) == {key_hash(old)}

    await eventually(world._quiet(kept), "the trusted-key Secret to hold the current key", 30)
    new = private_key_pem()
    await world.kube.patch(
        Secret,
        names.PRIVATE_KEY_SECRET,
        {"data": {names.PRIVATE_KEY_SECRET_KEY: base64.b64encode(new).decode()}},
        namespace=world.settings.namespace,
        patch_type=PatchType.MERGE,
    )
    world.key_pem = new
    return new


async def events(world: World, reason: str) -> list[Event]:
    """Events of ``reason`` in every namespace (a Node's land in ``default``)."""
    return [e async for e in world.kube.list(Event, namespace="*") if e.reason == reason]


async def mentions(world: World, reason: str, host: WindowsHost) -> bool:
    return any(host.address in (e.message or "") for e in await events(world, reason))


async def node_hash(world: World, host: WindowsHost) -> str | None:
    node = await world.node_of(host)
    return ((node.metadata.annotations if node and node.metadata else None) or {}).get(
        names.PUB_KEY_HASH_ANNOTATION
    )


async def user_data_keys(world: World) -> list[str]:
    script = await world.user_data()
    return [key.pub_key_hash for key in userdata.authorized_keys_in(script)]


async def test_a_new_key_moves_every_host_without_downtime(world: World) -> None:
    hosts = await two_configured_hosts(world)
    old = world.key_pem
    pids = {host.address: service_pids(host) for host in hosts}
    async with watching(world.kube) as watch:
        new = await rotate(world)

        async def complete() -> bool:
            return bool(await world.events(names.EventReason.KEY_ROTATION_COMPLETE))

        await eventually(world._quiet(complete), "a KeyRotationComplete Event", 90)

        async def watch_saw_both_moves() -> bool:
            return all(
                key_hash(new) in watch.hashes.get(host.facts.hostname, set()) for host in hosts
            )

        # The watch saw the input (both Nodes changing their hash): its silence about NotReady
        # means something.
        await eventually(watch_saw_both_moves, "the watch to see both Nodes move", 10)
    assert watch.not_ready == [], f"Nodes went NotReady during the rotation: {watch.not_ready}"
    for host in hosts:
        assert key_hash(old) in watch.hashes[host.facts.hostname]
        assert await node_hash(world, host) == key_hash(new)
        assert await logs_in(host, new), f"the new key does not log in on {host.address}"
        assert not await logs_in(host, old), f"the old key still logs in on {host.address}"
        assert service_pids(host) == pids[host.address], "a key rotation restarts nothing"
        content = host.machine.disk.read_file(ADMIN_KEYS).decode()
        assert content.count("ssh-") == 1, "exactly one key stays authorised"
    for host in hosts:
        assert await mentions(world, names.EventReason.HOST_KEY_ROTATED, host)
    rotated = [
        e
        for e in await events(world, names.EventReason.HOST_KEY_ROTATED)
        if any(host.address in (e.message or "") for host in hosts)
    ]

    async def only_new_in_user_data() -> bool:
        return await user_data_keys(world) == [key_hash(new)]

    await eventually(only_new_in_user_data, "the user data to authorise only the new key", 30)
    assert await trusted_hashes(world) == {key_hash(new)}
    # Fingerprints only: no key material in the Events.
    for event in (*rotated, *await world.events(names.EventReason.KEY_ROTATION_COMPLETE)):
        assert "SHA256:" in (event.message or "")
        assert "PRIVATE KEY" not in (event.message or "")
        assert base64.b64encode(new).decode()[:40] not in (event.message or "")


async def test_an_operator_restarted_mid_rotation_finishes_the_job(world: World) -> None:
    fast, slow = await two_configured_hosts(world)
    old = world.key_pem
    # Each command on `slow` takes a while: it is still being moved when `fast` is done.
    slow.faults.command_latency = 4.0
    new = await rotate(world)

    async def fast_moved() -> bool:
        return await node_hash(world, fast) == key_hash(new)

    await eventually(world._quiet(fast_moved), "the first host to move", 60)
    await world.stop_operator()
    # Killed mid-rotation: one host moved, the other not, and the Secret keeps both keys.
    assert await node_hash(world, slow) == key_hash(old)
    assert await trusted_hashes(world) == {key_hash(old), key_hash(new)}
    assert not await world.events(names.EventReason.KEY_ROTATION_COMPLETE)
    slow.faults.command_latency = 0.0
    await world.start_operator()

    async def complete() -> bool:
        return bool(await world.events(names.EventReason.KEY_ROTATION_COMPLETE))

    await eventually(world._quiet(complete), "the restarted operator to finish the rotation", 90)
    for host in (fast, slow):
        assert await node_hash(world, host) == key_hash(new)
        assert await logs_in(host, new)
        assert not await logs_in(host, old)
    assert await trusted_hashes(world) == {key_hash(new)}


async def test_a_host_reachable_with_neither_key_is_named_while_the_other_moves(
    world: World,
) -> None:
    good, lost = await two_configured_hosts(world)
    old = world.key_pem
    # Someone replaced the keys on `lost`: neither the old nor the new key gets in.
    foreign = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    lost.machine.disk.write_file(ADMIN_KEYS, foreign.encode("ascii"))
    assert not await logs_in(lost, old)
    new = await rotate(world)

    async def failure_named() -> bool:
        return await mentions(world, names.EventReason.HOST_KEY_ROTATION_FAILED, lost)

    await eventually(world._quiet(failure_named), "a HostKeyRotationFailed naming the host", 90)

    async def good_moved() -> bool:
        return await node_hash(world, good) == key_hash(new)

    await eventually(world._quiet(good_moved), "the reachable host to move", 60)
    assert await logs_in(good, new) and not await logs_in(good, old)
    assert not await mentions(world, names.EventReason.HOST_KEY_ROTATION_FAILED, good)
    assert await node_hash(world, lost) == key_hash(old)
    # The rotation is not over while `lost` trusts the old key: both keys are kept.
    assert await trusted_hashes(world) == {key_hash(old), key_hash(new)}
    assert not await world.events(names.EventReason.KEY_ROTATION_COMPLETE)


async def test_a_host_booted_from_the_old_user_data_joins_and_is_then_re_keyed(
    world: World,
) -> None:
    configured = await world.boot_host()
    await world.list_instances({configured.address: "username=Administrator"})
    await world.wait_ready(configured)
    old = world.key_pem
    old_user_data = await world.user_data()
    # A host that booted before the change: its user data authorises the old key only.
    late = await world.boot_host(user_data=old_user_data)
    async with watching(world.kube) as watch:
        new = await rotate(world)
        await world.list_instances({late.address: "username=Administrator"})

        async def complete() -> bool:
            return bool(await events(world, names.EventReason.KEY_ROTATION_COMPLETE))

        await eventually(world._quiet(complete), "the rotation to complete", 120)
    node = await world.wait_ready(late)
    assert node.metadata is not None and node.metadata.name is not None
    # It was reached with the old key (its Node said so), then moved like the others.
    assert watch.hashes[node.metadata.name] >= {key_hash(old), key_hash(new)}
    assert await mentions(world, names.EventReason.HOST_KEY_ROTATED, late)
    for host in (configured, late):
        assert await node_hash(world, host) == key_hash(new)
        assert await logs_in(host, new)
        assert not await logs_in(host, old)


async def test_a_re_keyed_host_keeps_the_new_key_across_a_reboot(world: World) -> None:
    host = await world.boot_host()
    await world.list_instances({host.address: "username=Administrator"})
    await world.wait_ready(host)
    old = world.key_pem
    new = await rotate(world)

    async def moved() -> bool:
        return await node_hash(world, host) == key_hash(new)

    await eventually(world._quiet(moved), "the host to move to the new key", 60)
    runs = len(host.userdata_results)
    # The user data is <persist>: it runs again at this boot, with the keys of the first one.
    await host.reboot()

    async def rerun() -> bool:
        return len(host.userdata_results) > runs

    await eventually(rerun, "the user data to run again at boot", 60)
    assert host.userdata_results[-1].code == 0, host.userdata_results[-1].stderr
    assert await logs_in(host, new), "the reboot gave the host its first-boot keys back"
    assert not await logs_in(host, old)
