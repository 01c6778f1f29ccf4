"""Concurrency as a real bound: hosts that only wait (dead, booting) hold no place (issue 12 §7)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lightkube import AsyncClient
from test_operator import World, open_world

from kube_helpers import eventually
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost.host import allocate_address

CONCURRENCY = 2
DEAD = 10
BOOT_DEADLINE = 180.0


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
async def test_ten_dead_hosts_do_not_starve_a_live_one(
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
