"""The operator end to end: real control plane, real SSH to strict simulated Windows hosts.

The operator runs in-process (its manager with every controller) so that its logs can be captured
and scanned for secrets; the sandbox's e2e tests run it as its own process with its own
ServiceAccount instead.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Node, Secret, ServiceAccount
from lightkube.resources.node_v1 import RuntimeClass
from lightkube.types import PatchType

import wmco
from kube_helpers import eventually, node_bootstrapper_binding
from wmco import names, userdata
from wmco import operator as operator_mod
from wmco.payload import manifest as payload_manifest
from wmco.settings import ConfigMapKey, NetworkProfile, Settings
from wmco_sandbox import pki
from wmco_sandbox.controlplane import ControlPlane, free_port
from wmco_sandbox.netsim import ovn
from wmco_sandbox.winhost import kubelet as sim_kubelet
from wmco_sandbox.winhost.host import WindowsHost, allocate_address

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def private_key_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


@dataclass
class World:
    """One operator and its hosts, in namespaces of their own."""

    kube: AsyncClient
    plane: ControlPlane
    settings: Settings
    payload: payload_manifest.Manifest
    key_pem: bytes
    ssh_port: int
    hosts: list[WindowsHost] = field(default_factory=list)
    manager_task: asyncio.Task[None] | None = None

    async def start_operator(self) -> None:
        manager = operator_mod.build_manager(
            self.kube, self.settings, self.payload, machine_api=False, port=0
        )
        self.manager_task = asyncio.create_task(manager.run())

    async def stop_operator(self) -> None:
        if self.manager_task is not None:
            self.manager_task.cancel()
            # A cancelled operator must stop promptly; waiting forever would hide that bug.
            done, _ = await asyncio.wait({self.manager_task}, timeout=30)
            if not done:
                stuck = [
                    f"{t.get_name()}: {await_chain(t)}"
                    for t in asyncio.all_tasks()
                    if t is not asyncio.current_task() and not t.done()
                ]
                pytest.fail(f"the operator did not stop within 30s of being cancelled: {stuck}")
            with contextlib.suppress(asyncio.CancelledError, Exception):
                self.manager_task.result()
            self.manager_task = None

    async def user_data(self) -> str:
        got: dict[str, str] = {}

        async def written() -> bool:
            secret = await self.kube.get(
                Secret, names.USER_DATA_SECRET, namespace=self.settings.machine_api_namespace
            )
            data = (secret.data or {}).get(names.USER_DATA_SECRET_KEY) if secret else None
            if data:
                got["script"] = base64.b64decode(data).decode()
            return bool(data)

        await eventually(self._quiet(written), "the operator to write the user data", 60)
        return got["script"]

    @staticmethod
    def _quiet(check: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
        async def wrapped() -> bool:
            try:
                return await check()
            except Exception:
                return False

        return wrapped

    async def boot_host(self, *, user_data: str | None = None, **options: Any) -> WindowsHost:
        host = WindowsHost(
            address=allocate_address(),
            port=self.ssh_port,
            kubelet_factory=sim_kubelet.factory_with(lease_renew_interval=1.0, status_interval=1.0),
            **options,
        )
        self.hosts.append(host)
        await host.boot(user_data if user_data is not None else await self.user_data())
        return host

    async def list_instances(self, entries: dict[str, str | None]) -> None:
        namespace = self.settings.namespace
        existing = None
        with contextlib.suppress(Exception):
            existing = await self.kube.get(
                ConfigMap, names.INSTANCES_CONFIGMAP, namespace=namespace
            )
        if existing is None:
            await self.kube.create(
                ConfigMap(
                    metadata=ObjectMeta(name=names.INSTANCES_CONFIGMAP, namespace=namespace),
                    data={k: v for k, v in entries.items() if v is not None},
                )
            )
        else:
            await self.kube.patch(
                ConfigMap,
                names.INSTANCES_CONFIGMAP,
                {"data": entries},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )

    async def node_of(self, host: WindowsHost) -> Node | None:
        try:
            return await self.kube.get(Node, host.facts.hostname)
        except Exception:
            return None

    async def wait_ready(self, host: WindowsHost, timeout: float = 120) -> Node:
        async def configured() -> bool:
            node = await self.node_of(host)
            annotations = (node.metadata.annotations if node and node.metadata else None) or {}
            ready = any(
                c.type == "Ready" and c.status == "True"
                for c in ((node.status.conditions if node and node.status else None) or [])
            )
            return ready and names.VERSION_ANNOTATION in annotations

        await eventually(
            configured, f"host {host.address} to become a configured Ready node", timeout
        )
        node = await self.node_of(host)
        assert node is not None
        return node

    async def events(self, reason: str) -> list[Event]:
        return [
            e
            async for e in self.kube.list(Event, namespace=self.settings.namespace)
            if e.reason == reason
        ]


def await_chain(task: asyncio.Task[Any]) -> str:
    """Where a suspended task waits: each coroutine it awaits, outermost first."""
    parts = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = next(
            (
                getattr(awaited, a)
                for a in ("cr_frame", "gi_frame", "ag_frame")
                if hasattr(awaited, a)
            ),
            None,
        )
        if frame is None:
            break
        parts.append(
            f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_code.co_name}:{frame.f_lineno}"
        )
        awaited = next(
            (
                getattr(awaited, a)
                for a in ("cr_await", "gi_yieldfrom", "ag_await")
                if hasattr(awaited, a)
            ),
            None,
        )
    return " -> ".join(parts)


@contextlib.asynccontextmanager
async def open_world(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path, **overrides: Any
) -> AsyncIterator[World]:
    """An operator (its settings changed by ``overrides``) and the namespaces of its hosts."""
    suffix = base64.b32encode(os.urandom(5)).decode().lower().rstrip("=")
    operator_ns, mapi_ns, bootstrap_ns = f"wmco-{suffix}", f"mapi-{suffix}", f"boot-{suffix}"
    for ns in (operator_ns, mapi_ns, bootstrap_ns):
        await kube.create(Namespace(metadata=ObjectMeta(name=ns)))
    # What deploy/ binds once for the real bootstrap namespace.
    binding = await kube.create(node_bootstrapper_binding(bootstrap_ns))
    key_pem = private_key_pem()
    await kube.create(
        Secret(
            metadata=ObjectMeta(name=names.PRIVATE_KEY_SECRET, namespace=operator_ns),
            data={names.PRIVATE_KEY_SECRET_KEY: base64.b64encode(key_pem).decode()},
        )
    )
    port = free_port()
    settings = Settings(
        namespace=operator_ns,
        machine_api_namespace=mapi_ns,
        bootstrap_namespace=bootstrap_ns,
        ssh_port=port,
        ssh_connect_timeout=5,
        ssh_retry_interval=0.3,
        ssh_boot_deadline=30,
        ssh_command_timeout=30,
        node_ready_timeout=60,
        drain_timeout=30,
        retry_max=5,
        leader_election=False,
        service_cidr="10.0.0.0/24",
        probe_bind_address="127.0.0.1:0",
        network_profile=NetworkProfile.OVN_HYBRID,
        network_timeout=60,
    )
    settings = dataclasses.replace(settings, **overrides)
    payload = payload_manifest.generate_test_payload(tmp_path / "payload", version="test")
    world = World(kube, control_plane, settings, payload, key_pem, port)
    # OVN-Kubernetes' side of the hybrid overlay: hybrid-overlay-node waits for its node subnet.
    allocator = ovn.HybridOverlaySubnetAllocator(kube, resync=1.0)
    await allocator.__aenter__()
    await world.start_operator()
    try:
        yield world
    finally:
        try:
            await world.stop_operator()
        finally:
            # Even when the operator hangs, leave no host or Windows node to later tests (the
            # user-data controller, for one, looks at every Windows node of the cluster).
            await allocator.__aexit__(None, None, None)
            await asyncio.gather(*(h.stop() for h in world.hosts), return_exceptions=True)
            for host in world.hosts:
                with contextlib.suppress(Exception):
                    await kube.delete(Node, host.facts.hostname)
            # ...nor the RuntimeClasses the operator kept for those nodes (cluster-scoped).
            async for managed in kube.list(
                RuntimeClass, labels={names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}
            ):
                with contextlib.suppress(Exception):
                    await kube.delete(RuntimeClass, managed.metadata.name)  # type: ignore[union-attr]
        for ns in (operator_ns, mapi_ns, bootstrap_ns):
            with contextlib.suppress(Exception):
                await kube.delete(Namespace, ns)
        with contextlib.suppress(Exception):
            await kube.delete(type(binding), binding.metadata.name)  # type: ignore[union-attr]


@pytest.fixture
async def world(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path
) -> AsyncIterator[World]:
    async with open_world(control_plane, kube, tmp_path) as opened:
        yield opened


async def test_listed_host_becomes_a_configured_ready_node(world: World) -> None:
    host = await world.boot_host()
    await world.list_instances({host.address: "username=Administrator"})
    node = await world.wait_ready(host)

    assert node.metadata is not None and node.spec is not None
    labels = node.metadata.labels or {}
    annotations = node.metadata.annotations or {}
    assert labels[names.BYOH_LABEL] == "true"
    assert labels[names.OS_LABEL] == "windows"
    assert labels[names.WINDOWS_BUILD_LABEL] == host.facts.windows_build
    expected_hash = userdata.pub_key_hash(userdata.load_private_key(world.key_pem))
    assert annotations[names.PUB_KEY_HASH_ANNOTATION] == expected_hash
    assert annotations[names.USERNAME_ANNOTATION] == "Administrator"
    assert annotations[names.SSH_HOST_KEY_TYPE_ANNOTATION] == "ssh-ed25519"
    assert base64.b64decode(annotations[names.SSH_HOST_KEY_ANNOTATION]) == bytes(
        host.host_public_key.public_data
    )
    assert any(
        t.key == "os" and t.value == "Windows" and t.effect == "NoSchedule"
        for t in node.spec.taints or []
    )

    # The host's bootstrap ServiceAccount is deleted once the node is configured (right after the
    # annotations land), which revokes the token in its bootstrap kubeconfig: wait for it rather
    # than racing it.
    async def account_gone() -> bool:
        accounts = [
            a
            async for a in world.kube.list(
                ServiceAccount,
                namespace=world.settings.bootstrap_namespace,
                labels={names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE},
            )
            if (a.metadata.annotations or {}).get(names.INSTANCE_ADDRESS_ANNOTATION) == host.address  # type: ignore[union-attr]
        ]
        return accounts == []

    await eventually(account_gone, "the bootstrap ServiceAccount of the host to be deleted", 30)
    # The Event follows the node's annotations: wait for it rather than racing it.
    await eventually(
        world._quiet(lambda: _has_event(world, names.EventReason.INSTANCE_SETUP)),
        "an InstanceSetup Event",
        30,
    )
    # Every command the host received was one the strict host understood.
    failures = [r for r in host.command_log if r.exit_status not in (0, 1060, None)]
    assert not [r for r in failures if "is not recognized" in r.stderr]


async def test_a_fresh_host_takes_at_most_ten_execs_and_its_files_come_as_archives(
    world: World,
) -> None:
    # Issue 12 §3/§4: a host without the Containers feature, configured from nothing.
    host = await world.boot_host()
    assert host.machine.features.get("containers") != "Enabled"
    await world.list_instances({host.address: "username=Administrator"})
    await world.wait_ready(host)
    await eventually(
        world._quiet(lambda: _has_event(world, names.EventReason.INSTANCE_SETUP)),
        "an InstanceSetup Event",
        30,
    )
    execs = [record.command for record in host.command_log]
    assert host.traffic.execs == len(execs)
    assert len(execs) <= 10, "\n".join(command[:120] for command in execs)
    assert host.traffic.sftp_sessions == 1, "every archive went over one SFTP session"
    assert any("Set-Content -LiteralPath 'C:\\k\\kube-proxy.conf'" in c for c in execs)
    # Payload and generated files each came as one archive, unpacked by the host's tar.exe;
    # the network files (no secret in them) were written by the network step's script.
    archives = [archive for archive, _ in host.machine.unpacked]
    assert archives == [
        "C:\\Windows\\Temp\\wmco-payload.tar.gz",
        "C:\\Windows\\Temp\\wmco-files.tar.gz",
    ]
    payload_members = set(host.machine.unpacked[0][1])
    assert payload_members == {
        item.destination[3:].replace("\\", "/") for item in world.payload.files
    }


async def test_removed_entry_deconfigures_the_host_and_deletes_its_node(world: World) -> None:
    host = await world.boot_host()
    await world.list_instances({host.address: "username=Administrator"})
    await world.wait_ready(host)
    assert host.machine.scm.running("kubelet")

    await world.list_instances({host.address: None})

    async def gone() -> bool:
        return await world.node_of(host) is None

    await eventually(gone, "the node of the removed instance to be deleted", 90)
    await eventually(
        world._quiet(lambda: _async(host.machine.scm.get("kubelet") is None)),
        "the kubelet service to be deleted from the host",
        30,
    )
    assert host.machine.disk.get("C:\\k\\kubelet.exe") is None
    await eventually(
        world._quiet(lambda: _has_event(world, names.EventReason.INSTANCE_TEARDOWN)),
        "an InstanceTeardown Event",
        30,
    )


async def _async(value: bool) -> bool:
    return value


async def _has_event(world: World, reason: str) -> bool:
    return bool(await world.events(reason))


async def test_bad_entry_and_unreachable_host_do_not_stop_a_good_one(world: World) -> None:
    good = await world.boot_host()
    unreachable = allocate_address()  # nothing listens there
    await world.list_instances(
        {
            good.address: "username=Administrator",
            "bad-entry": "user=Administrator",
            unreachable: "username=Administrator",
        }
    )
    await world.wait_ready(good)

    async def reported() -> bool:
        invalid = await world.events(names.EventReason.INVALID_INSTANCE)
        failed = await world.events(names.EventReason.INSTANCE_SETUP_FAILURE)
        return bool(invalid) and any(unreachable in (e.message or "") for e in failed)

    try:
        await eventually(reported, "Events for the bad entry and the unreachable host", 60)
    except BaseException:
        seen = [e async for e in world.kube.list(Event, namespace=world.settings.namespace)]
        print([(e.reason, e.message) for e in seen])
        raise
    invalid = await world.events(names.EventReason.INVALID_INSTANCE)
    assert any("bad-entry" in (e.message or "") for e in invalid)


async def test_hostile_username_is_refused_and_runs_nothing(world: World) -> None:
    host = await world.boot_host()
    hostile = "Administrator'; Remove-Item -Recurse C:\\ ; '$(whoami)`"
    await world.list_instances({host.address: f"username={hostile}"})

    async def refused() -> bool:
        return bool(await world.events(names.EventReason.INVALID_INSTANCE))

    await eventually(refused, "the hostile entry to be refused in an Event", 90)
    assert host.command_log == []
    assert host.machine.disk.get("C:\\Windows") is not None


async def test_changed_host_key_is_refused_with_an_event(world: World) -> None:
    host = await world.boot_host()
    await world.list_instances({host.address: "username=Administrator"})
    node = await world.wait_ready(host)

    # The host is reinstalled behind the same address: a new host key.
    import asyncssh

    host.host_key = asyncssh.generate_private_key("ssh-ed25519")
    await host.reboot()
    await host.wait_rebooted()
    assert node.metadata is not None
    await world.kube.patch(
        Node,
        node.metadata.name or "",
        {"metadata": {"annotations": {names.VERSION_ANNOTATION: None}}},
        patch_type=PatchType.MERGE,
    )

    async def refused() -> bool:
        return bool(await world.events(names.EventReason.HOST_KEY_MISMATCH))

    await eventually(refused, "a HostKeyMismatch Event", 90)


async def test_interrupted_configuration_resumes_without_duplicates(world: World) -> None:
    host = await world.boot_host()
    await world.list_instances({host.address: "username=Administrator"})

    async def services_being_created() -> bool:
        return any("sc.exe create" in r.command for r in host.command_log)

    await eventually(services_being_created, "the operator to reach the services step", 60)
    await world.stop_operator()  # killed mid-configuration
    copied = {f.destination: host.machine.disk.get(f.destination) for f in world.payload.files}
    assert all(copied.values()), "the payload was copied before the services step"
    mtimes = {path: node.mtime for path, node in copied.items() if node is not None}

    await world.start_operator()
    await world.wait_ready(host)
    nodes = [
        n
        async for n in world.kube.list(Node, labels={names.OS_LABEL: "windows"})
        if n.metadata
        and (n.metadata.annotations or {}).get(names.INSTANCE_ADDRESS_ANNOTATION) == host.address
    ]
    assert len(nodes) == 1
    for path, mtime in mtimes.items():
        current = host.machine.disk.get(path)
        assert current is not None and current.mtime == mtime, f"{path} was copied again"


async def test_secrets_never_reach_logs_or_events(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host = await world.boot_host()
    await world.list_instances({host.address: "username=Administrator"})
    await world.wait_ready(host)
    kubeconfig = host.machine.disk.read_file("C:\\k\\bootstrap-kubeconfig")
    assert kubeconfig is not None
    token = json.loads(kubeconfig)["users"][0]["user"]["token"]
    signature = token.rsplit(".", 1)[1]  # a JWT: header.claims.signature
    key_body = b"".join(world.key_pem.splitlines()[1:-1]).decode()
    events = [e async for e in world.kube.list(Event, namespace=world.settings.namespace)]
    texts = [caplog.text, *((e.message or "") for e in events)]
    assert "bootstrap token of" in caplog.text  # the token was issued and talked about
    for text in texts:
        assert token not in text
        assert signature not in text
        assert key_body[:40] not in text


def service_pids(host: WindowsHost) -> dict[str, int]:
    """The process id of every running service (a restart changes it)."""
    return {svc.name: svc.pid for svc in host.machine.scm.processes()}


async def restart_operator_with(world: World, **changes: Any) -> None:
    await world.stop_operator()
    world.settings = dataclasses.replace(world.settings, **changes)
    await world.start_operator()


async def test_one_changed_binary_restarts_only_its_service(world: World, tmp_path: Path) -> None:
    host = await world.boot_host()
    await world.list_instances({host.address: "username=Administrator"})
    await world.wait_ready(host)
    before = service_pids(host)
    assert {
        "containerd",
        "kubelet",
        "hybrid-overlay-node",
        "kube-proxy",
        "windows_exporter",
    } <= set(before)
    # A new payload version whose only new byte is in windows_exporter.exe.
    new_dir = tmp_path / "payload-2"
    shutil.copytree(world.payload.directory, new_dir)
    (new_dir / "windows_exporter.exe").write_bytes(b"MZ windows_exporter, the next release")
    await world.stop_operator()
    world.payload = payload_manifest.write_manifest(
        new_dir, payload_manifest.TEST_PAYLOAD_FILES, version="test-2"
    )
    await world.start_operator()

    async def upgraded() -> bool:
        node = await world.node_of(host)
        annotations = (node.metadata.annotations if node and node.metadata else None) or {}
        return annotations.get(names.VERSION_ANNOTATION) == names.node_version(
            wmco.__version__, "test-2"
        )

    unpacked_before = len(host.machine.unpacked)
    await eventually(upgraded, "the node to carry the new version", 90)
    # The upgrade sent one archive holding the one changed payload file, nothing else.
    assert host.machine.unpacked[unpacked_before:] == [
        ("C:\\Windows\\Temp\\wmco-payload.tar.gz", ("k/windows_exporter.exe",))
    ]
    after = service_pids(host)
    assert host.machine.disk.read_file("C:\\k\\windows_exporter.exe") == (
        b"MZ windows_exporter, the next release"
    )
    assert after["windows_exporter"] != before["windows_exporter"]
    unchanged = {name: pid for name, pid in before.items() if name != "windows_exporter"}
    assert {name: after[name] for name in unchanged} == unchanged, "only windows_exporter restarts"


async def test_rotated_kubelet_client_ca_is_rewritten_without_a_restart(world: World) -> None:
    namespace = world.settings.namespace
    bundle = world.plane.kubelet_client_ca_pem.decode()
    await world.kube.create(
        ConfigMap(
            metadata=ObjectMeta(name="kubelet-client-ca", namespace=namespace),
            data={"ca-bundle.crt": bundle},
        )
    )
    await restart_operator_with(
        world,
        kubelet_ca_configmap=ConfigMapKey.parse(f"{namespace}/kubelet-client-ca:ca-bundle.crt"),
    )
    host = await world.boot_host()
    await world.list_instances({host.address: "username=Administrator"})
    await world.wait_ready(host)
    assert host.machine.disk.read_file("C:\\k\\kubelet-ca.crt") == bundle.encode()
    before = service_pids(host)
    # The signer rotates: the bundle carries the next CA next to the current one.
    rotated = bundle + pki.CertificateAuthority("next-kubelet-client-signer").pair.cert_pem.decode()
    await world.kube.patch(
        ConfigMap,
        "kubelet-client-ca",
        {"data": {"ca-bundle.crt": rotated}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )

    async def rewritten() -> bool:
        return host.machine.disk.read_file("C:\\k\\kubelet-ca.crt") == rotated.encode()

    await eventually(rewritten, "the rotated bundle on the host", 60)
    assert service_pids(host) == before, "a new client CA restarts nothing"


async def test_removed_host_keeps_no_network_state(world: World) -> None:
    host = await world.boot_host()
    await world.list_instances({host.address: "username=Administrator"})
    await world.wait_ready(host)
    hns = host.machine.hns
    assert hns.network_named(names.HYBRID_OVERLAY_NETWORK) is not None
    assert any(e.name == names.VIP_ENDPOINT for e in hns.endpoints.values())

    await world.list_instances({host.address: None})

    async def gone() -> bool:
        return await world.node_of(host) is None

    await eventually(gone, "the node of the removed instance to be deleted", 90)
    assert hns.network_named(names.HYBRID_OVERLAY_NETWORK) is None
    assert hns.network_named(names.HYBRID_OVERLAY_BASE_NETWORK) is None
    assert not hns.endpoints
    for path in ("C:\\k\\cni\\config\\cni.conf", "C:\\var\\lib\\cni"):
        assert host.machine.disk.get(path) is None, f"{path} is left behind"
