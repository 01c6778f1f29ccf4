"""The operator's uploads share one SFTP session per SSH connection (issue 12 §4).

``wmco.windows.ssh.WindowsHost`` against the simulated host, which counts the SFTP subsystem
sessions its sshd opened (``WindowsHost.traffic.sftp_sessions``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pathlib
from collections.abc import AsyncIterator

import asyncssh
import pytest
from winhost_helpers import wait_for

from wmco import settings
from wmco.windows import commands, ssh, sshfailures, sshkeys
from wmco_sandbox.winhost.host import WindowsHost


@pytest.fixture
async def operator_host(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> AsyncIterator[ssh.WindowsHost]:
    """The operator's connection to the booted host, with ``C:\\k`` created."""
    config = settings.Settings(ssh_port=host.port, ssh_boot_deadline=5, ssh_connect_timeout=5)
    pinned = sshkeys.HostKey.from_ssh_key(host.host_public_key)
    remote = ssh.WindowsHost(
        host.address, "Administrator", client_key, settings=config, pinned_host_key=pinned
    )
    await remote.connect()
    assert (await remote.run(commands.make_directories(["C:\\k"]))).ok
    yield remote
    await remote.close()


def _digest(host: WindowsHost, path: str) -> str:
    data = host.machine.disk.read_file(path)
    assert data is not None, path
    return hashlib.sha256(data).hexdigest()


async def test_uploads_on_one_connection_share_one_session(
    host: WindowsHost, operator_host: ssh.WindowsHost, tmp_path: pathlib.Path
) -> None:
    before = host.traffic.sftp_sessions
    source = tmp_path / "kubelet.exe"
    data = os.urandom(700_000)  # several writes of UPLOAD_BLOCK
    source.write_bytes(data)
    for i in range(3):
        await operator_host.put_file(source, f"C:\\k\\file-{i}.exe")
        await operator_host.put_bytes(f"config {i}".encode(), f"C:\\k\\conf-{i}.txt")
    assert host.traffic.sftp_sessions - before == 1
    for i in range(3):
        assert _digest(host, f"C:\\k\\file-{i}.exe") == hashlib.sha256(data).hexdigest()
        assert host.machine.disk.read_file(f"C:\\k\\conf-{i}.txt") == f"config {i}".encode()


async def test_concurrent_first_uploads_open_one_session(
    host: WindowsHost, operator_host: ssh.WindowsHost
) -> None:
    before = host.traffic.sftp_sessions
    await asyncio.gather(
        *(operator_host.put_bytes(bytes([i]) * 100_000, f"C:\\k\\c{i}.bin") for i in range(4))
    )
    assert host.traffic.sftp_sessions - before == 1
    for i in range(4):
        assert host.machine.disk.read_file(f"C:\\k\\c{i}.bin") == bytes([i]) * 100_000


async def test_reconnect_opens_a_new_session(
    host: WindowsHost, operator_host: ssh.WindowsHost
) -> None:
    before = host.traffic.sftp_sessions
    await operator_host.put_bytes(b"one", "C:\\k\\a.txt")
    await operator_host.put_bytes(b"two", "C:\\k\\b.txt")
    assert host.traffic.sftp_sessions - before == 1
    await operator_host.reconnect()
    await operator_host.put_bytes(b"three", "C:\\k\\c.txt")
    await operator_host.put_bytes(b"four", "C:\\k\\d.txt")
    assert host.traffic.sftp_sessions - before == 2
    assert host.machine.disk.read_file("C:\\k\\d.txt") == b"four"


async def test_a_dropped_connection_gets_a_new_session(
    host: WindowsHost, operator_host: ssh.WindowsHost
) -> None:
    before = host.traffic.sftp_sessions
    await operator_host.put_bytes(b"before", "C:\\k\\a.txt")
    for server_side in list(host.connections):
        server_side.abort()  # what a reboot or an HNS blip does
    await wait_for(lambda: not operator_host.connected)
    await operator_host.put_bytes(b"after", "C:\\k\\b.txt")
    assert operator_host.connected
    assert host.traffic.sftp_sessions - before == 2
    assert host.machine.disk.read_file("C:\\k\\b.txt") == b"after"


async def test_a_refused_file_keeps_the_session_and_its_error(
    host: WindowsHost, operator_host: ssh.WindowsHost
) -> None:
    before = host.traffic.sftp_sessions
    with pytest.raises(sshfailures.TransferError) as info:
        await operator_host.put_bytes(b"x", "C:\\nodir\\x.txt", what="kubelet config")
    assert str(info.value) == (
        f"host {host.address}: upload of kubelet config to C:\\nodir\\x.txt failed: SFTPNoSuchFile"
    )
    assert operator_host.connected
    await operator_host.put_bytes(b"ok", "C:\\k\\ok.txt")
    assert host.traffic.sftp_sessions - before == 1
    assert host.machine.disk.read_file("C:\\k\\ok.txt") == b"ok"


async def test_a_connection_dropped_mid_upload_is_a_transfer_error_then_recovers(
    host: WindowsHost, operator_host: ssh.WindowsHost, tmp_path: pathlib.Path
) -> None:
    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(2_000_000))
    host.faults.drop_after_bytes = 500_000
    with pytest.raises(sshfailures.TransferError) as info:
        await operator_host.put_file(source, "C:\\k\\payload.bin")
    assert str(info.value).startswith(
        f"host {host.address}: upload of payload.bin to C:\\k\\payload.bin failed: "
    )
    await wait_for(lambda: not operator_host.connected)
    host.faults.drop_after_bytes = None
    before = host.traffic.sftp_sessions
    await operator_host.put_file(source, "C:\\k\\payload.bin")
    assert host.traffic.sftp_sessions - before == 1
    assert _digest(host, "C:\\k\\payload.bin") == hashlib.sha256(source.read_bytes()).hexdigest()


async def test_close_ends_the_session(host: WindowsHost, operator_host: ssh.WindowsHost) -> None:
    await operator_host.put_bytes(b"x", "C:\\k\\x.txt")
    assert host.connections
    await operator_host.close()
    await wait_for(lambda: not host.connections)
    before = host.traffic.sftp_sessions
    await operator_host.put_bytes(b"y", "C:\\k\\y.txt")  # connects again, a new session
    assert host.traffic.sftp_sessions - before == 1


async def test_uploads_use_aes_gcm_without_compression(
    host: WindowsHost, operator_host: ssh.WindowsHost
) -> None:
    await operator_host.put_bytes(b"x", "C:\\k\\x.txt")
    (server_side,) = host.connections
    assert server_side.get_extra_info("recv_cipher") == "aes128-gcm@openssh.com"
    assert server_side.get_extra_info("recv_compression") == "none"


async def test_a_session_the_host_ended_is_replaced_at_its_next_use(
    host: WindowsHost, operator_host: ssh.WindowsHost
) -> None:
    before = host.traffic.sftp_sessions
    await operator_host.put_bytes(b"one", "C:\\k\\a.txt")
    (server_side,) = host.connections
    channels = list(server_side._channels.values())  # asyncssh keeps no public list
    assert len(channels) == 1  # the SFTP session, idle between uploads
    channels[0].close()  # as if sftp-server.exe had exited
    await wait_for(lambda: not server_side._channels)
    await operator_host.put_bytes(b"two", "C:\\k\\b.txt")
    assert operator_host.connected
    assert host.traffic.sftp_sessions - before == 2
    assert host.machine.disk.read_file("C:\\k\\b.txt") == b"two"


async def test_a_cancelled_upload_to_a_slow_host_ends_at_once(
    host: WindowsHost, operator_host: ssh.WindowsHost, tmp_path: pathlib.Path
) -> None:
    # At 1 kB/s the file's writes take minutes to be answered; a stopping operator must not
    # wait for them (asyncssh's own cancel still closes the remote file, which waits).
    host.faults.sftp_bandwidth = 1_000
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(600_000))
    before = host.traffic.sftp_bytes_written
    upload = asyncio.create_task(operator_host.put_file(source, "C:\\k\\big.bin"))
    # The host has a write in hand (counted as it arrives, answered at 1 kB/s).
    await wait_for(lambda: host.traffic.sftp_bytes_written > before)
    upload.cancel()
    async with asyncio.timeout(10):
        with pytest.raises(asyncio.CancelledError):
            await upload
    assert not operator_host.connected
    host.faults.sftp_bandwidth = 0
    await operator_host.put_bytes(b"after", "C:\\k\\after.txt")  # the next use reconnects
    assert host.machine.disk.read_file("C:\\k\\after.txt") == b"after"
