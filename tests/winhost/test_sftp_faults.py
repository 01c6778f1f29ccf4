"""SFTP with Windows paths, concurrency on one connection, and fault injection."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
import time

import asyncssh
import pytest
from winhost_helpers import connect

from wmco_sandbox.winhost.host import WindowsHost


@pytest.mark.parametrize("path", ["/C:/k/a.bin", "C:/k/a.bin", "C:\\k\\a.bin", "/c:/K/A.BIN"])
async def test_sftp_path_forms(
    conn: asyncssh.SSHClientConnection, host: WindowsHost, path: str
) -> None:
    async with conn.start_sftp_client() as sftp:
        await sftp.makedirs("/C:/k")
        async with sftp.open(path, "wb") as f:
            await f.write(b"12345")
        assert (await sftp.stat(path)).size == 5
        assert await sftp.realpath(path) in ("/C:/k/a.bin", "/C:/k/A.BIN")
    assert host.machine.disk.read_file("C:\\K\\a.bin") == b"12345"


async def test_sftp_realpath_home_and_listing(conn: asyncssh.SSHClientConnection) -> None:
    async with conn.start_sftp_client() as sftp:
        assert await sftp.realpath(".") == "/C:/Users/Administrator"
        assert await sftp.realpath("/C:") == "/C:/"
        await sftp.makedirs("C:/k/cni")
        names = sorted(await sftp.listdir("/C:/k"))
        assert names == [".", "..", "cni"]
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.stat("/C:/nope")
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            async with sftp.open("/C:/nodir/x", "wb"):
                pass
        await sftp.rename("/C:/k/cni", "/C:/k/cni2")
        assert await sftp.isdir("C:/k/cni2")


async def test_put_file_and_many_channels(
    conn: asyncssh.SSHClientConnection, tmp_path: object
) -> None:
    payload = os.urandom(300_000)
    async with conn.start_sftp_client() as sftp:
        await sftp.makedirs("/C:/k")
        async with sftp.open("/C:/k/big.bin", "wb") as f:
            await f.write(payload)

        async def one(i: int) -> asyncssh.SSHCompletedProcess:
            return await conn.run(f"Test-Path -LiteralPath 'C:\\k\\big.bin'; exit {i}", check=False)

        results = await asyncio.gather(*(one(i) for i in range(8)))
        assert [r.exit_status for r in results] == list(range(8))
        assert all(r.stdout == "True\r\n" for r in results)
    r = await conn.run(
        "(Get-FileHash -LiteralPath 'C:\\k\\big.bin' -Algorithm SHA256).Hash", check=False
    )
    assert r.stdout.strip() == hashlib.sha256(payload).hexdigest().upper()


async def test_disk_full(conn: asyncssh.SSHClientConnection, host: WindowsHost) -> None:
    host.faults.disk_full = True
    async with conn.start_sftp_client() as sftp:
        await sftp.makedirs("/C:/k")
        with pytest.raises(asyncssh.SFTPFailure):
            async with sftp.open("/C:/k/x", "wb") as f:
                await f.write(b"data")
    r = await conn.run(
        "Set-Content -LiteralPath 'C:\\k\\y' -Value 'abc' -Encoding ascii", check=False
    )
    assert r.exit_status == 1
    assert "Set-Content : There is not enough space on the disk." in r.stderr
    host.faults.disk_full = False
    r = await conn.run(
        "Set-Content -LiteralPath 'C:\\k\\y' -Value 'abc' -Encoding ascii", check=False
    )
    assert r.exit_status == 0


async def test_disk_capacity(client_key: asyncssh.SSHKey, user_data: str) -> None:
    host = WindowsHost(disk_capacity=2_000_000)
    await host.boot(user_data)
    try:
        conn = await connect(host, client_key)
        async with conn.start_sftp_client() as sftp:
            await sftp.makedirs("/C:/k")
            with pytest.raises(asyncssh.SFTPFailure):
                async with sftp.open("/C:/k/x", "wb") as f:
                    await f.write(b"x" * 3_000_000)
        conn.close()
    finally:
        await host.stop()


async def test_bandwidth_cap(conn: asyncssh.SSHClientConnection, host: WindowsHost) -> None:
    host.faults.sftp_bandwidth = 200_000
    async with conn.start_sftp_client() as sftp:
        await sftp.makedirs("/C:/k")
        start = time.monotonic()
        async with sftp.open("/C:/k/x", "wb") as f:
            await f.write(b"x" * 60_000)
        assert time.monotonic() - start >= 0.25


async def test_drop_after_bytes(conn: asyncssh.SSHClientConnection, host: WindowsHost) -> None:
    host.faults.drop_after_bytes = 10_000
    with pytest.raises(
        (asyncssh.SFTPError, asyncssh.ConnectionLost, asyncssh.DisconnectError, OSError)
    ):
        async with conn.start_sftp_client() as sftp:
            await sftp.makedirs("/C:/k")
            async with sftp.open("/C:/k/x", "wb") as f:
                await f.write(b"x" * 50_000)


async def test_refuse_auth_and_latency(host: WindowsHost, client_key: asyncssh.SSHKey) -> None:
    host.faults.refuse_auth = True
    with pytest.raises(asyncssh.PermissionDenied):
        await connect(host, client_key)
    host.faults.refuse_auth = False
    host.faults.command_latency = 0.2
    conn = await connect(host, client_key)
    start = time.monotonic()
    r = await conn.run("hostname", check=False)
    assert r.exit_status == 0 and time.monotonic() - start >= 0.2
    conn.close()


async def test_command_log(conn: asyncssh.SSHClientConnection, host: WindowsHost) -> None:
    await conn.run("sc.exe qc nosuch; exit $LASTEXITCODE", check=False)
    record = host.command_log[-1]
    assert (record.user, record.shell, record.command, record.exit_status) == (
        "Administrator", "powershell", "sc.exe qc nosuch; exit $LASTEXITCODE", 1060,
    )  # fmt: skip


def targz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def test_sink_mode_keeps_hashes_and_unpacks(
    client_key: asyncssh.SSHKey, user_data: str
) -> None:
    big = os.urandom(400_000)
    host = WindowsHost(sink_threshold=64 * 1024)
    await host.boot(user_data)
    try:
        conn = await connect(host, client_key)
        async with conn.start_sftp_client() as sftp:
            await sftp.makedirs("/C:/k")
            await sftp.makedirs("/C:/tmp")
            async with sftp.open("/C:/tmp/big.bin", "wb") as f:
                await f.write(big)
            archive = targz({"kubelet.exe": big, "small.conf": b"hello"})
            async with sftp.open("/C:/k/kubelet.exe.tar.gz", "wb") as f:
                await f.write(archive)
            assert (await sftp.stat("/C:/tmp/big.bin")).size == len(big)
        node = host.machine.disk.get("C:\\tmp\\big.bin")
        assert node is not None and getattr(node, "data", b"") is None  # content not kept
        r = await conn.run(
            "(Get-FileHash -LiteralPath 'C:\\tmp\\big.bin' -Algorithm SHA256).Hash", check=False
        )
        assert r.stdout.strip() == hashlib.sha256(big).hexdigest().upper()
        r = await conn.run(
            "tar -xzf 'C:\\k\\kubelet.exe.tar.gz' -C 'C:\\k'; exit $LASTEXITCODE", check=False
        )
        assert r.exit_status == 0, r.stderr
        r = await conn.run(
            "(Get-FileHash -LiteralPath 'C:\\k\\kubelet.exe' -Algorithm SHA256).Hash", check=False
        )
        assert r.stdout.strip() == hashlib.sha256(big).hexdigest().upper()
        assert host.machine.disk.read_file("C:\\k\\small.conf") == b"hello"
        conn.close()
    finally:
        await host.stop()


async def test_replacing_faults_object_reaches_every_part(
    conn: asyncssh.SSHClientConnection, host: WindowsHost
) -> None:
    from wmco_sandbox.winhost import Faults

    host.faults = Faults(disk_full=True, reboot_unreachable=0.01)
    r = await conn.run("Set-Content -LiteralPath 'C:\\x.txt' -Value 'abc'", check=False)
    assert r.exit_status == 1 and "not enough space" in r.stderr


async def test_sunk_file_cannot_be_read_back(client_key: asyncssh.SSHKey, user_data: str) -> None:
    host = WindowsHost(sink_threshold=1024)
    await host.boot(user_data)
    try:
        conn = await connect(host, client_key)
        async with conn.start_sftp_client() as sftp:
            async with sftp.open("/C:/big.bin", "wb") as f:
                await f.write(b"z" * 5000)
            with pytest.raises(asyncssh.SFTPFailure):
                async with sftp.open("/C:/big.bin", "rb") as f:
                    await f.read()
        conn.close()
    finally:
        await host.stop()


async def test_max_sessions_per_connection(
    conn: asyncssh.SSHClientConnection, host: WindowsHost
) -> None:
    host.faults.command_latency = 0.5  # keep the sessions open
    procs = [await conn.create_process("hostname") for _ in range(10)]
    with pytest.raises(asyncssh.ChannelOpenError):
        await conn.create_process("hostname")
    host.faults.command_latency = 0
    for proc in procs:
        await proc.wait()
    r = await conn.run("hostname", check=False)
    assert r.exit_status == 0
