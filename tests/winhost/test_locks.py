"""Files a running service holds cannot be overwritten, renamed or deleted; stopping frees them.

Covers: SFTP open-for-write, remove and rename of a running image (permission denied); the
PowerShell 5.1 records of Remove-Item (also -Recurse over a directory: the rest goes, the held
file and its directories stay), Move-Item, Set-Content and New-Item -Force; tar -x over a held
file (bsdtar's unlink failure); the child of kube-log-runner held as well as the runner; and the
file released the moment the service stops. Move-Item's own behaviour comes first.
"""

from __future__ import annotations

import gzip
import io
import tarfile

import asyncssh
import pytest
from winhost_helpers import connect, flat

from wmco_sandbox.winhost.host import WindowsHost

KUBELET = "C:\\k\\kubelet.exe"
IN_USE = "The process cannot access the file '{}' because it is being used by another process."


async def ps(conn: asyncssh.SSHClientConnection, command: str) -> asyncssh.SSHCompletedProcess:
    return await conn.run(command, check=False)


@pytest.fixture
async def running(host: WindowsHost, client_key: asyncssh.SSHKey) -> asyncssh.SSHClientConnection:
    """A connection to a host whose ``kubelet`` service runs ``C:\\k\\kubelet.exe``."""
    conn = await connect(host, client_key)
    await ps(conn, "New-Item -ItemType Directory -Force -Path 'C:\\k' | Out-Null")
    async with conn.start_sftp_client() as sftp:
        for name in ("kubelet.exe", "kubelet.conf"):
            async with sftp.open(f"/C:/k/{name}", "wb") as handle:
                await handle.write(b"MZ old")
    created = await ps(
        conn, f"sc.exe create 'kubelet' binPath= '{KUBELET} --windows-service'; exit $LASTEXITCODE"
    )
    assert created.exit_status == 0, created.stdout
    started = await ps(conn, "sc.exe start 'kubelet'; exit $LASTEXITCODE")
    assert started.exit_status == 0, started.stdout
    return conn


async def test_sftp_refuses_writes_to_a_running_image(
    host: WindowsHost, running: asyncssh.SSHClientConnection
) -> None:
    async with running.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.open("/C:/k/kubelet.exe", "wb")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.open("C:\\k\\KUBELET.EXE", "ab")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.remove("/C:/k/kubelet.exe")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.rename("/C:/k/kubelet.exe", "/C:/k/kubelet.old")
        # Reading is fine, and so is writing the files it does not hold.
        async with sftp.open("/C:/k/kubelet.exe", "rb") as handle:
            assert await handle.read() == b"MZ old"
        async with sftp.open("/C:/k/kubelet.conf", "wb") as handle:
            await handle.write(b"new conf")
        assert host.machine.disk.read_file(KUBELET) == b"MZ old"
        stopped = await ps(running, "sc.exe stop 'kubelet'; exit $LASTEXITCODE")
        assert stopped.exit_status == 0
        async with sftp.open("/C:/k/kubelet.exe", "wb") as handle:
            await handle.write(b"MZ new")
    assert host.machine.disk.read_file(KUBELET) == b"MZ new"


async def test_powershell_records_for_a_held_file(
    host: WindowsHost, running: asyncssh.SSHClientConnection
) -> None:
    removed = await ps(running, f"Remove-Item -LiteralPath '{KUBELET}' -Force")
    assert removed.exit_status == 1
    text = flat(removed.stderr)
    assert f"Remove-Item : Cannot remove item {KUBELET}: {IN_USE.format(KUBELET)}" in text
    assert (
        "CategoryInfo          : WriteError: (C:\\k\\kubelet.exe:FileInfo) [Remove-Item], IOException"
        in text
    )
    assert "RemoveFileSystemItemIOError,Microsoft.PowerShell.Commands.RemoveItemCommand" in text
    moved = await ps(running, f"Move-Item -LiteralPath '{KUBELET}' -Destination 'C:\\k\\k.old'")
    assert moved.exit_status == 1
    text = flat(moved.stderr)
    assert (
        "Move-Item : The process cannot access the file because it is being used by another process."
        in text
    )
    assert "MoveFileInfoItemIOError,Microsoft.PowerShell.Commands.MoveItemCommand" in text
    written = await ps(running, f"Set-Content -LiteralPath '{KUBELET}' -Value 'x' -Encoding ascii")
    assert written.exit_status == 1
    text = flat(written.stderr)
    assert f"Set-Content : {IN_USE.format(KUBELET)}" in text
    assert "GetContentWriterIOError,Microsoft.PowerShell.Commands.SetContentCommand" in text
    forced = await ps(running, f"New-Item -ItemType File -Force -Path '{KUBELET}' | Out-Null")
    assert forced.exit_status == 1
    assert "NewItemIOError,Microsoft.PowerShell.Commands.NewItemCommand" in flat(forced.stderr)
    assert host.machine.disk.read_file(KUBELET) == b"MZ old"
    await ps(running, "Stop-Service -Name 'kubelet'")
    freed = await ps(running, f"Remove-Item -LiteralPath '{KUBELET}' -Force")
    assert (freed.exit_status, freed.stderr) == (0, "")
    assert host.machine.disk.get(KUBELET) is None


async def test_recursive_removal_leaves_only_the_held_file(
    host: WindowsHost, running: asyncssh.SSHClientConnection
) -> None:
    await ps(running, "New-Item -ItemType Directory -Force -Path 'C:\\k\\sub' | Out-Null")
    await ps(running, "Set-Content -LiteralPath 'C:\\k\\sub\\a.txt' -Value 'a'")
    result = await ps(
        running,
        "if (Test-Path -LiteralPath 'C:\\k') { Remove-Item -LiteralPath 'C:\\k' -Recurse -Force }",
    )
    assert result.exit_status == 1
    text = flat(result.stderr)
    assert f"Cannot remove item {KUBELET}: {IN_USE.format(KUBELET)}" in text
    assert "Remove-Item : Cannot remove item C:\\k: The directory is not empty." in text
    assert "(C:\\k:DirectoryInfo) [Remove-Item], IOException" in text
    assert text.index("kubelet.exe: The process") < text.index("C:\\k: The directory")
    children = host.machine.disk.get("C:\\k")
    assert children is not None and list(children.children) == ["kubelet.exe"]  # type: ignore[union-attr]


async def test_tar_cannot_replace_a_held_file(
    host: WindowsHost, running: asyncssh.SSHClientConnection
) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (("kubelet.exe", b"MZ new"), ("kubelet.conf", b"conf")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    async with (
        running.start_sftp_client() as sftp,
        sftp.open("/C:/k/payload.tar.gz", "wb") as handle,
    ):
        await handle.write(gzip.compress(raw.getvalue()))
    result = await ps(running, "tar -xzf 'C:\\k\\payload.tar.gz' -C 'C:\\k'; exit $LASTEXITCODE")
    assert result.exit_status == 1
    assert result.stderr == (
        "tar.exe: kubelet.exe: Can't unlink already-existing object: Permission denied\r\n"
        "tar.exe: Error exit delayed from previous errors.\r\n"
    )
    assert host.machine.disk.read_file(KUBELET) == b"MZ old"
    assert host.machine.disk.read_file("C:\\k\\kubelet.conf") == b"conf"


async def test_kube_log_runner_holds_itself_and_its_child(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    conn = await connect(host, client_key)
    await ps(conn, "New-Item -ItemType Directory -Force -Path 'C:\\k' | Out-Null")
    for name in ("kube-log-runner.exe", "exporter.exe", "other.exe"):
        host.machine.disk.write_file(f"C:\\k\\{name}", b"MZ")
    bin_path = "C:\\k\\kube-log-runner.exe -log-file=C:\\k\\e.log C:\\k\\exporter.exe --v=2"
    await ps(conn, f"sc.exe create 'exporter' binPath= '{bin_path}'; exit $LASTEXITCODE")
    assert (await ps(conn, "sc.exe start 'exporter'; exit $LASTEXITCODE")).exit_status == 0
    async with conn.start_sftp_client() as sftp:
        for held in ("kube-log-runner.exe", "exporter.exe"):
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.open(f"/C:/k/{held}", "wb")
        async with sftp.open("/C:/k/other.exe", "wb") as handle:
            await handle.write(b"MZ 2")
        await ps(conn, "sc.exe stop 'exporter'; exit $LASTEXITCODE")
        async with sftp.open("/C:/k/exporter.exe", "wb") as handle:
            await handle.write(b"MZ 2")
    conn.close()


async def test_move_item(host: WindowsHost, client_key: asyncssh.SSHKey) -> None:
    conn = await connect(host, client_key)
    await ps(conn, "New-Item -ItemType Directory -Force -Path 'C:\\k\\d' | Out-Null")
    await ps(conn, "Set-Content -LiteralPath 'C:\\k\\a.txt' -Value 'a' -NoNewline")
    await ps(conn, "Set-Content -LiteralPath 'C:\\k\\b.txt' -Value 'b' -NoNewline")
    moved = await ps(conn, "Move-Item -Path 'C:\\k\\a.txt' -Destination 'C:\\k\\c.txt'")
    assert (moved.exit_status, moved.stdout, moved.stderr) == (0, "", "")
    assert host.machine.disk.read_file("C:\\k\\c.txt") == b"a"
    assert host.machine.disk.get("C:\\k\\a.txt") is None
    exists = await ps(conn, "Move-Item -LiteralPath 'C:\\k\\c.txt' -Destination 'C:\\k\\b.txt'")
    assert exists.exit_status == 1
    text = flat(exists.stderr)
    assert "Move-Item : Cannot create a file when that file already exists." in text
    assert "(C:\\k\\c.txt:FileInfo) [Move-Item], IOException" in text
    forced = await ps(
        conn, "Move-Item -LiteralPath 'C:\\k\\c.txt' -Destination 'C:\\k\\b.txt' -Force"
    )
    assert forced.exit_status == 0 and host.machine.disk.read_file("C:\\k\\b.txt") == b"a"
    into = await ps(conn, "Move-Item 'C:\\k\\b.txt' 'C:\\k\\d'")
    assert into.exit_status == 0 and host.machine.disk.read_file("C:\\k\\d\\b.txt") == b"a"
    missing = await ps(conn, "Move-Item -LiteralPath 'C:\\k\\nosuch' -Destination 'C:\\k\\x'")
    assert missing.exit_status == 1
    assert "Move-Item : Cannot find path 'C:\\k\\nosuch' because it does not exist." in flat(
        missing.stderr
    )
    assert "PathNotFound,Microsoft.PowerShell.Commands.MoveItemCommand" in missing.stderr
    parent = await ps(conn, "Move-Item -LiteralPath 'C:\\k\\d\\b.txt' -Destination 'C:\\no\\b.txt'")
    assert parent.exit_status == 1 and "Could not find a part of the path." in flat(parent.stderr)
    both = await ps(conn, "Move-Item -Path 'C:\\k\\d' -LiteralPath 'C:\\k\\d' -Destination 'C:\\e'")
    assert both.exit_status == 1 and "AmbiguousParameterSet" in both.stderr
    conn.close()
