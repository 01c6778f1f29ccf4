"""Drift repair: a configured host is probed (one exec) every resync and repaired when it drifted.

Real control plane, strict simulated hosts, the operator in-process (``test_operator``'s world)
with a short ``resync_interval``. Drift is made on the host the way a person would: a service
stopped, a file edited, ``sc.exe config`` run by hand. Each test first proves the probe ran (its
command is in the host's exec log) before it claims something did not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Node, ServiceAccount
from lightkube.types import PatchType
from test_operator import World, open_world, service_pids

from kube_helpers import eventually
from wmco import names
from wmco.windows import commands, layout
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost import kubelet as sim_kubelet
from wmco_sandbox.winhost.host import WindowsHost

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RESYNC = 2.0
PROBE_START = f"Write-Output '{commands.PROBE_MARK} build'"


@pytest.fixture
async def world(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path
) -> AsyncIterator[World]:
    async with open_world(control_plane, kube, tmp_path, resync_interval=RESYNC) as opened:
        yield opened


def probes(host: WindowsHost, since: int = 0) -> list[int]:
    """Indexes in the host's exec log of the drift probes from ``since`` on."""
    return [
        index
        for index, record in enumerate(host.command_log)
        if index >= since and record.command.startswith(PROBE_START)
    ]


async def drift_events(world: World, node: str) -> list[Event]:
    return [
        event
        async for event in world.kube.list(
            Event, namespace="default", fields={"involvedObject.name": node}
        )
        if event.reason == names.EventReason.HOST_DRIFT_REPAIRED
    ]


async def boot_host(world: World) -> WindowsHost:
    """``world.boot_host`` on an address of a range of its own.

    The machine is shared with other test runs whose hosts take ``127.0.10.x`` (in process
    order); a second windows_exporter on the same address and port would fail to bind and be
    reported, rightly, as drift.
    """
    host = WindowsHost(
        address=f"127.0.{random.randint(100, 199)}.{random.randint(2, 250)}",
        port=world.ssh_port,
        kubelet_factory=sim_kubelet.factory_with(lease_renew_interval=1.0, status_interval=1.0),
    )
    world.hosts.append(host)
    await host.boot(await world.user_data())
    return host


async def configured(world: World) -> tuple[WindowsHost, str]:
    """A configured Ready host whose first drift probe after its configuration ran."""
    host = await boot_host(world)
    await world.list_instances({host.address: "username=Administrator"})
    node = await world.wait_ready(host)
    assert node.metadata is not None and node.metadata.name
    start = len(host.command_log)
    await eventually(lambda: _value(probes(host, start)), "a drift probe of the host", 30)
    return host, node.metadata.name


async def _value(value: object) -> object:
    return value


async def repaired(world: World, node: str, *parts: str) -> Event:
    async def found() -> Event | None:
        for event in await drift_events(world, node):
            if all(part in (event.message or "") for part in parts):
                return event
        return None

    return await eventually(found, f"a HostDriftRepaired Event saying {parts}", 90)


async def test_a_probe_that_finds_nothing_is_one_exec_and_no_event(world: World) -> None:
    host, node = await configured(world)
    first = probes(host)[-1]
    began = time.monotonic()
    # Three more probes: the node's status updates re-queue the host every second meanwhile.
    await eventually(lambda: _value(len(probes(host, first)) >= 4), "three more drift probes", 30)
    elapsed = time.monotonic() - began
    after = host.command_log[first:]
    assert all(record.command.startswith(PROBE_START) for record in after), [
        record.command[:80] for record in after if not record.command.startswith(PROBE_START)
    ]
    assert all(record.exit_status == 0 and not record.stderr for record in after)
    assert elapsed >= 3 * RESYNC - 0.5, "probed more often than resync_interval"
    assert await drift_events(world, node) == []


async def test_stopped_kube_proxy_is_started_again_and_nothing_else_restarts(
    world: World,
) -> None:
    host, node = await configured(world)
    before = service_pids(host)
    await host.machine.scm.stop("kube-proxy")

    event = await repaired(world, node, "kube-proxy was Stopped")
    await eventually(
        lambda: _value(host.machine.scm.running("kube-proxy")), "kube-proxy running", 30
    )
    assert event.type == "Normal" and event.involvedObject.kind == "Node"
    after = service_pids(host)
    others = {name: pid for name, pid in before.items() if name != "kube-proxy"}
    assert {name: after[name] for name in others} == others, "only kube-proxy was started"
    assert event.message is not None and "differed" not in event.message


async def test_changed_files_and_service_definition_are_restored(world: World) -> None:
    host, node = await configured(world)
    disk = host.machine.disk
    config = disk.read_file("C:\\k\\kube-proxy.conf")
    exporter = disk.read_file("C:\\k\\windows_exporter.exe")
    assert config is not None and exporter is not None
    definition = host.machine.scm.require("kube-proxy").bin_path
    before = service_pids(host)
    # A person edits the configuration, swaps a binary (stopping its service first: Windows
    # holds a running image) and changes a service's command line with sc.exe config.
    disk.write_file("C:\\k\\kube-proxy.conf", config + b"\n# edited by hand\n")
    await host.machine.scm.stop("windows_exporter")
    disk.write_file("C:\\k\\windows_exporter.exe", b"MZ not the payload's windows_exporter")
    changed = await host.run(
        "sc.exe config kube-proxy binPath= 'C:\\k\\kube-proxy.exe --v=9'; exit $LASTEXITCODE",
        shell="powershell",
    )
    assert changed.code == 0, changed.stdout

    event = await repaired(
        world,
        node,
        "kube-proxy had another command line",
        "windows_exporter was Stopped",
        "C:\\k\\windows_exporter.exe differed",
        "C:\\k\\kube-proxy.conf differed",
    )
    assert event.message is not None
    assert disk.read_file("C:\\k\\kube-proxy.conf") == config
    assert disk.read_file("C:\\k\\windows_exporter.exe") == exporter
    assert host.machine.scm.require("kube-proxy").bin_path == definition
    after = service_pids(host)
    assert host.machine.scm.running("windows_exporter")
    assert after["kube-proxy"] != before["kube-proxy"], "kube-proxy restarted on its new files"
    untouched = ("containerd", "kubelet", "hybrid-overlay-node")
    assert {name: after[name] for name in untouched} == {name: before[name] for name in untouched}


class AccountWatch:
    """The names of the ServiceAccounts ADDED in a namespace while it runs (a live API watch)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.namespace = world.settings.bootstrap_namespace
        self.added: list[str] = []
        self.task: asyncio.Task[None] | None = None

    @property
    def bootstrap_accounts(self) -> list[str]:
        return [name for name in self.added if name.startswith(names.BOOTSTRAP_ACCOUNT_PREFIX)]

    async def _watch(self) -> None:
        async for kind, account in self.world.kube.watch(ServiceAccount, namespace=self.namespace):
            if kind == "ADDED" and account.metadata:
                self.added.append(account.metadata.name or "")

    async def __aenter__(self) -> AccountWatch:
        async def accounts_gone() -> bool:
            return not [
                account
                async for account in self.world.kube.list(ServiceAccount, namespace=self.namespace)
                if account.metadata
                and (account.metadata.name or "").startswith(names.BOOTSTRAP_ACCOUNT_PREFIX)
            ]

        await eventually(accounts_gone, "the host's bootstrap account to be deleted", 30)
        self.task = asyncio.create_task(self._watch())
        # The watch is live: it sees an account made now.
        marker = f"watch-marker-{random.randint(0, 1 << 30)}"
        await self.world.kube.create(
            ServiceAccount(metadata=ObjectMeta(name=marker, namespace=self.namespace))
        )
        await eventually(lambda: _value(marker in self.added), "the watch to see an account", 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


async def force_rerun(world: World, host: WindowsHost, node: str) -> list[str]:
    """Delete the node's version annotation; the commands of the pass that follows."""
    start = len(host.command_log)
    await world.kube.patch(
        Node,
        node,
        {"metadata": {"annotations": {names.VERSION_ANNOTATION: None}}},
        patch_type=PatchType.MERGE,
    )
    await world.wait_ready(host)
    rerun = [record.command for record in host.command_log[start:]]
    # The re-run went through the whole flow: it read the kubelet's certificate and every
    # service, and reached the network steps (their look lists HNS and asks about kube-proxy).
    assert any(layout.KUBELET_CLIENT_CERT in command for command in rerun)
    assert any(
        "sc.exe query 'kube-proxy'" in command and "wmco-probe hns-networks" in command
        for command in rerun
    )
    return rerun


async def test_forced_rerun_on_a_healthy_host_mints_no_token_and_restarts_nothing(
    world: World,
) -> None:
    host, node = await configured(world)
    async with AccountWatch(world) as accounts:
        pids = service_pids(host)
        files = {
            path: disk_node.mtime
            for path in (
                layout.BOOTSTRAP_KUBECONFIG,
                layout.KUBELET_CONFIG,
                layout.KUBE_PROXY_CONFIG,
                layout.KUBELET_EXE,
            )
            if (disk_node := host.machine.disk.get(path)) is not None
        }
        assert len(files) == 4
        rerun = await force_rerun(world, host, node)
        # No account (so no token), no write, no restart.
        assert accounts.bootstrap_accounts == []
        assert not any(command.startswith("sc.exe st") for command in rerun)
        for path, mtime in files.items():
            current = host.machine.disk.get(path)
            assert current is not None and current.mtime == mtime, f"{path} was written"
        assert service_pids(host) == pids


def expired_certificate() -> bytes:
    """A kubelet client PEM (certificate, then key) that expired an hour ago."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "system:node:expired")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now - datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


async def test_a_host_whose_client_certificate_expired_still_gets_a_token(world: World) -> None:
    host, node = await configured(world)
    before = host.machine.disk.get(layout.BOOTSTRAP_KUBECONFIG)
    assert before is not None
    written = before.mtime
    host.machine.disk.write_file(layout.KUBELET_CLIENT_CERT, expired_certificate())
    async with AccountWatch(world) as accounts:
        await force_rerun(world, host, node)
        assert accounts.bootstrap_accounts != [], "no bootstrap account was made"
    after = host.machine.disk.get(layout.BOOTSTRAP_KUBECONFIG)
    assert after is not None and after.mtime != written, "the bootstrap kubeconfig was not written"


async def test_a_failed_probe_is_logged_and_tried_again_at_the_next_interval(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wmco.controllers.hosts")
    host, node = await configured(world)
    host.faults.refuse_auth = True  # the host refuses the operator's key; its kubelet runs on

    def failures() -> int:
        return caplog.text.count("drift probe failed")

    await eventually(lambda: _value(failures() >= 2), "two failed drift probes", 60)
    start = len(host.command_log)
    host.faults.refuse_auth = False
    await eventually(lambda: _value(probes(host, start)), "a drift probe once the key works", 60)
    assert await drift_events(world, node) == []
    assert all(record.command.startswith(PROBE_START) for record in host.command_log[start:])
