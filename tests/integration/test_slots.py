"""Concurrency as a real bound: hosts that only wait (dead, booting, installing a feature) or upload
hold no place (issue 12 §7)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from lightkube import AsyncClient
from test_operator import World, open_world

from kube_helpers import eventually
from wmco.settings import NetworkProfile
from wmco.windows import layout, transfer
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost.core.profile import FAST
from wmco_sandbox.winhost.host import WindowsHost, allocate_address

CONCURRENCY = 2
DEAD = 80
"""More dead hosts than the concurrency, and than 64 workers: every one of them is tried at once."""
BOOT_DEADLINE = 180.0
FEATURE_INSTALL = 300.0
"""Seconds the slow host's Containers feature install takes: far longer than the other host's
whole join, and within the command timeout, so only a released place lets the other host in."""


@pytest.fixture
async def world(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path
) -> AsyncIterator[World]:
    async with open_world(
        control_plane,
        kube,
        tmp_path,
        concurrency=CONCURRENCY,
        ssh_boot_deadline=BOOT_DEADLINE,
        ssh_connect_timeout=2,
        ssh_retry_interval=0.5,
    ) as opened:
        yield opened


@pytest.mark.slow
async def test_eighty_dead_hosts_are_all_tried_and_do_not_starve_a_live_one(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wmco")
    dead = [allocate_address() for _ in range(DEAD)]  # nothing listens there: refused, retried
    await world.list_instances(dict.fromkeys(dead, "username=Administrator"))
    started = time.monotonic()

    async def all_tried() -> bool:
        text = caplog.text
        return all(f"instance {address}: connect: connecting to" in text for address in dead)

    # Every dead host is being tried at once, far more than the concurrency: waiting for SSH to
    # answer holds no place.
    await eventually(all_tried, "every dead host to be tried", 30)
    host = await world.boot_host()
    await world.list_instances({host.address: "username=Administrator"})
    await world.wait_ready(host, timeout=90)
    # The live host made it while the dead ones were still inside their boot deadline.
    assert time.monotonic() - started < BOOT_DEADLINE
    failed = [a for a in dead if f"instance {a}: step connect:" in caplog.text]
    assert failed == [], f"dead hosts gave up before the live host was done: {failed}"


@pytest.fixture
async def one_place(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path
) -> AsyncIterator[World]:
    async with open_world(
        control_plane, kube, tmp_path, concurrency=1, ssh_command_timeout=FEATURE_INSTALL + 60
    ) as opened:
        yield opened


async def another_host_joins_while(
    world: World, slow: WindowsHost, busy: Callable[[], bool]
) -> None:
    """List ``slow``; once ``busy()``, list a second host: it must be Ready while still ``busy()``.

    The world has one place, so the second host joins only if ``slow`` let its place go.
    """
    await world.list_instances({slow.address: "username=Administrator"})

    async def started() -> bool:
        return busy()

    await eventually(started, "the slow host's long step to start", 60)
    quick = await world.boot_host()
    await world.list_instances(
        {slow.address: "username=Administrator", quick.address: "username=Administrator"}
    )
    await world.wait_ready(quick, timeout=90)
    assert busy(), "the slow host's step ended first: the test proved nothing"


@pytest.mark.slow
async def test_a_host_installing_its_feature_lets_another_host_join(one_place: World) -> None:
    slow = await one_place.boot_host(
        profile=dataclasses.replace(FAST, name="slow-feature", feature_install=FEATURE_INSTALL)
    )
    # Its Install-WindowsFeature exec is still running: the wait holds no place.
    await another_host_joins_while(one_place, slow, lambda: "containers" in slow.machine.installing)


SLOW_UPLOAD_RATE = 100
"""Bytes per second of the slow host's SFTP: its payload archive (some kilobytes) takes minutes."""


@pytest.mark.slow
async def test_a_host_uploading_its_payload_lets_another_host_join(one_place: World) -> None:
    slow = await one_place.boot_host()
    slow.faults.sftp_bandwidth = SLOW_UPLOAD_RATE
    staged = f"{layout.STAGING_DIR}\\{transfer.ARCHIVE_NAMES[0]}"
    # The upload runs under the byte budget, not in the place.
    await another_host_joins_while(
        one_place, slow, lambda: slow.machine.disk.get(staged) is not None
    )


@pytest.fixture
async def no_cni(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path
) -> AsyncIterator[World]:
    # hostprocess with no CNI DaemonSet: the node registers and stays NotReady.
    async with open_world(
        control_plane, kube, tmp_path, network_profile=NetworkProfile.HOSTPROCESS
    ) as opened:
        yield opened


@pytest.mark.slow
async def test_a_host_waiting_for_ready_holds_no_connection(
    no_cni: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wmco")
    host = await no_cni.boot_host()
    await no_cni.list_instances({host.address: "username=Administrator"})

    async def waiting_for_ready() -> bool:
        return f"instance {host.address}: node-ready: node " in caplog.text

    await eventually(waiting_for_ready, "the flow to wait for Ready", 60)

    async def disconnected() -> bool:
        return not host.connections

    await eventually(disconnected, "the operator's connection to close", 10)
    assert "registered; waiting for Ready" in caplog.text  # still waiting, not given up
    assert f"instance {host.address}: step node-ready" not in caplog.text
