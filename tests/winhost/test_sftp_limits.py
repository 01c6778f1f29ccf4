"""The simulated sftp-server reads messages of at most 256 KiB, as OpenSSH's does."""

from __future__ import annotations

import asyncssh
import pytest

from wmco.windows import sftp
from wmco_sandbox.winhost.host import WindowsHost
from wmco_sandbox.winhost.ssh.sftp import MAX_WRITE_DATA, SFTP_IO_LENGTH


async def test_limits_are_sftp_servers(conn: asyncssh.SSHClientConnection) -> None:
    async with conn.start_sftp_client() as sftp:
        limits = sftp.limits
    assert (limits.max_read_len, limits.max_write_len) == (255 * 1024, 255 * 1024)
    assert SFTP_IO_LENGTH == 255 * 1024


async def test_the_longest_write_is_accepted(
    conn: asyncssh.SSHClientConnection, host: WindowsHost
) -> None:
    data = b"w" * MAX_WRITE_DATA
    async with conn.start_sftp_client() as sftp:
        async with sftp.open("/C:/max.bin", "wb", block_size=MAX_WRITE_DATA) as f:
            await f.write(data)
        assert (await sftp.stat("/C:/max.bin")).size == MAX_WRITE_DATA
    assert host.machine.disk.read_file("C:\\max.bin") == data


async def test_a_longer_write_ends_the_session(
    conn: asyncssh.SSHClientConnection, host: WindowsHost
) -> None:
    block = 256 * 1024  # 256 KiB of data: the message is longer than SFTP_MAX_MSG_LENGTH
    async with conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPConnectionLost):
            async with sftp.open("/C:/big.bin", "wb", block_size=block) as f:
                await f.write(b"w" * block)
    r = await conn.run("hostname", check=False)  # the connection itself lives on
    assert r.exit_status == 0


def test_operator_writes_fit_in_one_message() -> None:
    assert sftp.UPLOAD_BLOCK <= MAX_WRITE_DATA
