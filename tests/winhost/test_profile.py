"""Host profiles: the named timings, what the host counts per host, and a start that takes time."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncssh
import pytest
from winhost_helpers import connect, wait_for

from wmco_sandbox.winhost.core import profile
from wmco_sandbox.winhost.core.scm import State
from wmco_sandbox.winhost.host import WindowsHost


def test_named_profiles_and_the_error_for_an_unknown_one() -> None:
    assert profile.named("fast") is profile.FAST
    assert profile.named("realistic") is profile.REALISTIC
    with pytest.raises(
        ValueError, match=r"unknown host profile 'slow'; choose one of fast, realistic"
    ):
        profile.named("slow")


def test_the_fast_profile_costs_nothing_and_the_realistic_one_costs_a_shell_start() -> None:
    assert profile.FAST.exec_cost("powershell") == 0.0
    assert profile.FAST.transfer_rate == 0
    realistic = profile.REALISTIC
    assert realistic.exec_cost("powershell") == realistic.round_trip + realistic.powershell_start
    assert realistic.exec_cost("cmd") == realistic.round_trip + realistic.cmd_start
    assert realistic.exec_cost("powershell") > realistic.exec_cost("cmd")
    # an upload is bound by the slower of the SSH stream and the disk
    assert realistic.transfer_rate == min(realistic.sftp_bandwidth, realistic.disk_write)
    assert dataclasses.replace(realistic, disk_write=0).transfer_rate == realistic.sftp_bandwidth


async def test_the_host_counts_execs_sftp_sessions_and_bytes(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    before = dataclasses.replace(host.traffic)
    conn = await connect(host, client_key)
    try:
        for _ in range(3):
            result = await conn.run("hostname", check=False)
            assert result.exit_status == 0
        for name, data in (("a.bin", b"x" * 1000), ("b.bin", b"y" * 24)):
            async with (
                conn.start_sftp_client() as sftp,
                sftp.open(f"C:/Users/Administrator/{name}", "wb") as f,
            ):
                await f.write(data)
    finally:
        conn.close()
        await conn.wait_closed()
    assert host.traffic.execs - before.execs == 3
    assert host.traffic.sftp_sessions - before.sftp_sessions == 2
    assert host.traffic.sftp_bytes_written - before.sftp_bytes_written == 1024


async def test_a_service_start_that_takes_time_is_start_pending_and_refuses_a_second_start() -> (
    None
):
    host = WindowsHost(
        profile=dataclasses.replace(profile.FAST, name="slow-start", service_start=30)
    )
    del host.machine.program_factories["containerd"]
    await host.boot(None)
    try:
        host.machine.disk.mkdir("C:\\k")
        host.machine.disk.write_file("C:\\k\\containerd.exe", b"MZ")
        create = await host.run(
            "sc.exe create containerd binPath= C:\\k\\containerd.exe start= auto", shell="cmd"
        )
        assert create.code == 0, create.stdout
        starting = asyncio.create_task(host.machine.scm.start("containerd"))
        service = host.machine.scm.require("containerd")
        await wait_for(lambda: service.state is State.START_PENDING)
        query = await host.run("sc.exe query containerd", shell="cmd")
        assert "START_PENDING" in query.stdout
        again = await host.run("sc.exe start containerd", shell="cmd")
        assert again.code == 1056, again.stdout
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        assert service.state is State.STOPPED  # an interrupted start leaves it stopped
    finally:
        await host.stop()


def test_a_host_built_with_a_profile_takes_its_reboot_time() -> None:
    host = WindowsHost(profile=profile.REALISTIC)
    assert host.machine.profile is profile.REALISTIC
    assert host.faults.reboot_unreachable == profile.REALISTIC.reboot
