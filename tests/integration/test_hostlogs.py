"""``wmco logs`` and ``wmco gather`` against hosts the operator configured, on the real API server.

The operator configures the hosts and is then stopped, so what the tools read is what it left:
Node annotations (address, user, pinned host key), the ``cloud-private-key`` Secret, Events.
The CLI runs in a thread (its own event loop) with the admin kubeconfig, as a person would.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest
import yaml
from click.testing import CliRunner, Result
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType
from test_operator import World, open_world

from wmco import cli, names
from wmco.tools import hostlogs
from wmco.windows import layout
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost import host as host_mod
from wmco_sandbox.winhost.host import WindowsHost

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KLOG = re.compile(r"[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d{6} ")


@pytest.fixture
async def world(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    # Other test sessions on this machine hand out 127.0.10.x too, and a kubelet binds
    # <address>:10250: start this module's hosts elsewhere in 127/8.
    monkeypatch.setattr(host_mod, "_addresses", itertools.count(secrets.randbelow(50) * 250 + 5000))
    async with open_world(control_plane, kube, tmp_path) as opened:
        yield opened


async def configured(world: World, count: int) -> list[WindowsHost]:
    hosts = [await world.boot_host() for _ in range(count)]
    await world.list_instances({h.address: "username=Administrator" for h in hosts})
    for host in hosts:
        await world.wait_ready(host)
    # The tools read what the operator left; it must not re-pin or repair behind their back.
    await world.stop_operator()
    return hosts


async def invoke(world: World, *args: str) -> Result:
    common = [
        "--kubeconfig", str(world.plane.kubeconfig), "--namespace", world.settings.namespace,
        "--port", str(world.ssh_port), "--connect-timeout", "3",
    ]  # fmt: skip
    return await asyncio.to_thread(
        CliRunner().invoke, cli.main, [*args, *common], catch_exceptions=False
    )


def kubelet_log(host: WindowsHost) -> list[str]:
    data = host.machine.disk.read_file(layout.KUBELET_LOG)
    assert data is not None, "the kubelet wrote no log file"
    return data.decode().splitlines()


def test_cli_offers_every_service_log() -> None:
    assert set(cli.LOG_SERVICES) == set(hostlogs.SERVICE_LOGS)


async def test_logs_prints_the_kubelet_log_and_since_drops_old_lines(world: World) -> None:
    (host,) = await configured(world, 1)
    node = host.facts.hostname
    # An old line at the end of the file (as after a clock jump): --since must drop it.
    old = "I0101 00:00:00.000000    4242 test.go:1] OLD-LINE-FROM-JANUARY"
    host.machine.disk.append_file(layout.KUBELET_LOG, old.encode() + b"\n")

    everything = await invoke(world, "logs", node, "--tail", "0")
    recent = await invoke(world, "logs", node, "--since", "1h", "--tail", "0")
    last_two = await invoke(world, "logs", node, "--tail", "2")

    assert everything.exit_code == 0, everything.output
    printed = everything.output.splitlines()
    on_disk = kubelet_log(host)
    assert printed == on_disk[: len(printed)]
    assert old in printed
    assert len([line for line in printed if KLOG.match(line)]) > 5
    assert recent.exit_code == 0, recent.output
    assert old not in recent.output
    assert KLOG.match(recent.output.splitlines()[0]), recent.output
    assert len(recent.output.splitlines()) > 5
    assert last_two.exit_code == 0
    assert len(last_two.output.splitlines()) == 2


async def test_logs_refuses_a_host_whose_key_is_not_the_pinned_one(world: World) -> None:
    (host,) = await configured(world, 1)
    other = asyncssh.generate_private_key("ssh-ed25519").convert_to_public()
    await world.kube.patch(
        Node,
        host.facts.hostname,
        {"metadata": {"annotations": {
            names.SSH_HOST_KEY_ANNOTATION: base64.b64encode(bytes(other.public_data)).decode(),
        }}},
        patch_type=PatchType.MERGE,
    )  # fmt: skip
    sent_before = len(host.command_log)

    result = await invoke(world, "logs", host.facts.hostname)

    assert result.exit_code == 1
    assert "SSH host key is not the pinned one" in result.output
    assert host.facts.hostname in result.output
    assert len(host.command_log) == sent_before, "a command reached an unverified host"


async def test_logs_of_an_unknown_node_says_so(world: World) -> None:
    result = await invoke(world, "logs", "no-such-node")

    assert result.exit_code == 1
    assert "node no-such-node not found" in result.output


async def test_gather_collects_every_node_and_names_the_one_that_is_down(
    world: World, tmp_path: Path
) -> None:
    up, down = await configured(world, 2)
    await down.stop()
    out = tmp_path / "gathered"

    result = await invoke(world, "gather", str(out), "--concurrency", "2")

    assert result.exit_code == 1, result.output
    assert down.facts.hostname in result.output
    folder = out / up.facts.hostname
    for service in hostlogs.SERVICE_LOGS:
        assert "SERVICE_NAME: " + service in (folder / "services.txt").read_text()
    kubelet = (folder / "kubelet.log").read_text().splitlines()
    assert kubelet and kubelet == kubelet_log(up)[: len(kubelet)]
    assert (folder / "node.yaml").exists()
    assert yaml.safe_load((folder / "node.yaml").read_text())["metadata"]["name"] == (
        up.facts.hostname
    )
    summary = (out / "summary.txt").read_text()
    assert re.search(rf"^{re.escape(up.facts.hostname)}: (collected|partial) ", summary, re.M)
    failed = re.search(rf"^{re.escape(down.facts.hostname)}: failed .*unreachable", summary, re.M)
    assert failed, summary
    events = yaml.safe_load((out / "events.yaml").read_text())
    reasons = {(e["metadata"]["namespace"], e["reason"]) for e in events}
    assert (world.settings.namespace, names.EventReason.INSTANCE_SETUP) in reasons, reasons
    # One progress line per node, each naming its node.
    progress = [line for line in result.output.splitlines() if line.startswith("[")]
    assert len(progress) == 2
    assert {up.facts.hostname, down.facts.hostname} == {
        line.split("] ", 1)[1].split(":", 1)[0] for line in progress
    }


async def test_gather_collects_nodes_concurrently_within_the_bound(
    world: World, tmp_path: Path
) -> None:
    hosts = await configured(world, 3)
    for host in hosts:
        host.faults.command_latency = 0.2  # each node takes seconds: overlaps are observable
    most = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, sum(1 for h in hosts if h.connections))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        result = await invoke(world, "gather", str(tmp_path / "out"), "--concurrency", "2")
    finally:
        done.set()
        await sampler

    assert result.exit_code == 0, result.output
    assert most == 2
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "collected 3, partial 0, failed 0" in summary, summary
