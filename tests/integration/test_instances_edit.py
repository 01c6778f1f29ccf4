"""A ``windows-instances`` edit re-queues only the entries it changed (issue 12 §5).

Seen through what the operator does: after an edit that adds one host, that host is configured
(the edit was processed) while the hosts already listed are neither reconciled again (the
instances controller's own log of each reconcile, at debug level) nor sent a single SSH exec.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lightkube import AsyncClient
from test_operator import World, open_world

from kube_helpers import eventually
from wmco import names
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost.host import WindowsHost

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOGGER = "wmco.controllers.instances"


@pytest.fixture
async def world(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path
) -> AsyncIterator[World]:
    # No drift probe comes due during the test: a configured host is reconciled again only
    # when something re-queues it.
    async with open_world(control_plane, kube, tmp_path, resync_interval=3600.0) as opened:
        yield opened


def reconciled(records: list[logging.LogRecord], host: WindowsHost) -> int:
    """How many reconciles of ``host``'s entry the records show."""
    pattern = re.compile(rf"^instance {re.escape(host.address)}: reconciling$")
    return sum(1 for r in records if r.name == LOGGER and pattern.match(r.getMessage()))


async def test_adding_one_entry_requeues_only_that_entry(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    listed = [await world.boot_host(), await world.boot_host()]
    added = await world.boot_host()
    await world.list_instances({host.address: "username=Administrator" for host in listed})
    for host in listed:
        await world.wait_ready(host)
    assert all(reconciled(caplog.records, host) for host in listed)

    # Both configure passes have ended (their InstanceSetup Events are their last act), so a
    # reconcile their own Node patches queued has run before the edit below is made.
    async def both_set_up() -> bool:
        return len(await world.events(names.EventReason.INSTANCE_SETUP)) >= len(listed)

    await eventually(both_set_up, "the InstanceSetup Events of the listed hosts", 60)
    mark = len(caplog.records)
    execs = [len(host.command_log) for host in listed]

    await world.list_instances({added.address: "username=Administrator"})
    await world.wait_ready(added)

    after = caplog.records[mark:]
    assert reconciled(after, added) >= 1
    # Re-queueing every entry reconciles each listed host at least once after the edit. A
    # listed host may still be reconciled once by its own last Node patch (the key was dirty
    # while its configure pass ran, so that reconcile can come after the mark): one such late
    # reconcile is tolerated, a re-queue of all of them is not.
    counts = [reconciled(after, host) for host in listed]
    assert sum(counts) < len(listed), (
        f"an edit that added one entry re-queued the entries it did not touch: {counts}"
    )
    assert [len(host.command_log) for host in listed] == execs, "a listed host was sent an exec"
