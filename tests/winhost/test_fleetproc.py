"""Simulated hosts in worker processes: boot, SSH, per-host traffic, destroy, nothing left behind."""

from __future__ import annotations

import os
import socket

import asyncssh
import pytest
from winhost_helpers import make_user_data, public_line

from wmco_sandbox import fleetproc
from wmco_sandbox.controlplane import free_port


async def _run(address: str, port: int, key: asyncssh.SSHKey, command: str) -> str:
    async with asyncssh.connect(
        address,
        port,
        username="Administrator",
        client_keys=[key],
        known_hosts=None,
        agent_path=None,
        config=None,
        connect_timeout=10,
    ) as conn:
        result = await conn.run(command, check=True)
        return str(result.stdout)


def _listening(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_hosts_in_worker_processes_serve_ssh_and_count_their_traffic(
    client_key: asyncssh.SSHKey,
) -> None:
    port = free_port()
    user_data = make_user_data(public_line(client_key))
    fleet = fleetproc.ProcessFleet(2, fleetproc.WorkerOptions(ssh_port=port), network=66)
    async with fleet:
        pids = fleet.pids
        assert len(set(pids)) == 2 and os.getpid() not in pids
        first = await fleet.boot_listed("byoh-0", user_data=user_data)
        booted = await fleet.boot("winworker-a", user_data=user_data, windows_build="10.0.17763")
        second = booted.address
        assert first.startswith("127.66.") and second.startswith("127.66.") and first != second
        assert (await _run(first, port, client_key, "hostname")).strip()
        # the Machine's host is named after it, as the sandbox's cloud does
        assert (await _run(second, port, client_key, "hostname")).strip().lower() == "winworker-a"
        await _run(second, port, client_key, "hostname")
        traffic = await fleet.traffic()
        assert traffic["byoh-0"]["execs"] == 1
        assert traffic["winworker-a"]["execs"] == 2
        assert traffic["byoh-0"]["sftp_sessions"] == 0
        await fleet.destroy("winworker-a")
        assert not _listening(second, port)
        assert set(await fleet.traffic()) == {"byoh-0"}
        assert _listening(first, port)
    assert not _listening(first, port)
    assert not any(_alive(pid) for pid in pids)


async def test_a_request_that_fails_in_the_worker_is_an_error_not_a_dead_worker(
    client_key: asyncssh.SSHKey,
) -> None:
    fleet = fleetproc.ProcessFleet(1, fleetproc.WorkerOptions(ssh_port=free_port()))
    async with fleet:
        with pytest.raises(fleetproc.FleetError, match="boot: KeyError"):
            await fleet._workers[0].call("boot", name="broken")  # no address, no user data
        address = await fleet.boot_listed(
            "byoh-1", user_data=make_user_data(public_line(client_key))
        )
        assert address
