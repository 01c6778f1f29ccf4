"""Files sent as .tar.gz archives and unpacked by the host's tar.exe in one script (issue 12 §4).

The operator's own client (:class:`wmco.windows.ssh.WindowsHost`) talks to a strict simulated
host: :func:`wmco.windows.transfer.stage` uploads the archives, one script made by
:mod:`wmco.windows.batch` unpacks them into place and checks every digest.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import AsyncIterator

import asyncssh
import pytest
from winhost_helpers import make_user_data, public_line

from wmco import settings as settings_mod
from wmco.windows import archive, batch, commands, layout, ssh, transfer
from wmco_sandbox.winhost.host import WindowsHost

SINK = 64 * 1024


@pytest.fixture
async def sink_host(client_key: asyncssh.SSHKey) -> AsyncIterator[WindowsHost]:
    h = WindowsHost(image="2022", sink_threshold=SINK)
    await h.boot(make_user_data(public_line(client_key)))
    yield h
    await h.stop()


@pytest.fixture
async def client(
    sink_host: WindowsHost, client_key: asyncssh.SSHKey
) -> AsyncIterator[ssh.WindowsHost]:
    config = settings_mod.Settings(ssh_connect_timeout=5, ssh_retry_interval=0.1)
    c = ssh.WindowsHost(
        sink_host.address, "Administrator", client_key, settings=config, port=sink_host.port
    )
    await c.connect(within=5)
    yield c
    await c.close()


def payload_item(tmp: pathlib.Path, destination: str, data: bytes) -> transfer.Content:
    source = tmp / hashlib.sha256(destination.encode()).hexdigest()[:12]
    source.write_bytes(data)
    return transfer.Content(destination, hashlib.sha256(data).hexdigest(), source=source)


def digest_on(host: WindowsHost, path: str) -> str | None:
    node = host.machine.disk.get(path)
    return None if node is None else node.sha256().hex()  # type: ignore[union-attr]


async def test_staged_files_land_with_their_digests_and_the_archives_are_removed(
    sink_host: WindowsHost, client: ssh.WindowsHost, tmp_path: pathlib.Path
) -> None:
    big = os.urandom(3 * SINK)  # sunk on the host: only size and digest are kept
    items = (
        payload_item(tmp_path, "C:\\k\\kubelet.exe", big),
        payload_item(tmp_path, "C:\\Program Files\\x y\\tool.exe", b"MZ small"),
        transfer.Content.of_bytes("C:\\k\\kubelet.conf", b"kind: KubeletConfiguration\n", "cfg"),
    )
    cache = archive.ArchiveCache(tmp_path / "cache")
    stages = await transfer.stage(client, items, cache)
    assert sink_host.machine.disk.get("C:\\k") is None, "nothing lands before the script runs"
    result = await client.run(batch.script(stages))
    assert batch.failure(stages, result.exit_status, result.stdout, result.stderr) is None
    for item in items:
        assert digest_on(sink_host, item.destination) == item.sha256
    for name in transfer.ARCHIVE_NAMES:
        assert sink_host.machine.disk.get(f"{layout.STAGING_DIR}\\{name}") is None
    # Sent again (as after a dropped connection): nothing to unpack, every digest still right.
    again = await client.run(batch.script(stages))
    assert batch.failure(stages, again.exit_status, again.stdout, again.stderr) is None


async def test_a_file_with_another_digest_stops_the_script_before_the_next_stage(
    sink_host: WindowsHost, client: ssh.WindowsHost
) -> None:
    sink_host.machine.disk.mkdir("C:\\k")
    sink_host.machine.disk.write_file("C:\\k\\kubelet.conf", b"edited by hand")
    stages = (
        batch.Stage("check", (batch.expect_hash("C:\\k\\kubelet.conf", "ab" * 32),)),
        batch.Stage("make", (commands.make_directories(["C:\\k\\after"]),)),
    )
    result = await client.run(batch.script(stages))
    assert result.exit_status == batch.MISMATCH_EXIT
    message = batch.failure(stages, result.exit_status, result.stdout, result.stderr)
    assert message == "check: C:\\k\\kubelet.conf has another SHA-256 than the one sent"
    assert sink_host.machine.disk.get("C:\\k\\after") is None


async def test_a_failing_native_stage_names_itself_and_its_exit_code(
    client: ssh.WindowsHost,
) -> None:
    stages = (
        batch.Stage("query of x", (commands.service_state("nosuch").split(";")[0],), ok=(0,)),
        batch.Stage("never", (commands.make_directories(["C:\\k\\never"]),)),
    )
    result = await client.run(batch.script(stages))
    message = batch.failure(stages, result.exit_status, result.stdout, result.stderr)
    assert result.exit_status == 1060
    assert message is not None and message.startswith("query of x failed with exit status 1060")


async def test_a_missing_file_is_the_cmdlets_own_error(client: ssh.WindowsHost) -> None:
    stages = (batch.Stage("check", (batch.expect_hash("C:\\k\\none.conf", "ab" * 32),)),)
    result = await client.run(batch.script(stages))
    message = batch.failure(stages, result.exit_status, result.stdout, result.stderr)
    assert result.exit_status == 1
    assert message is not None and "Cannot find path 'C:\\k\\none.conf'" in message


async def test_the_cache_builds_each_set_of_payload_files_once(tmp_path: pathlib.Path) -> None:
    cache = archive.ArchiveCache(tmp_path / "cache")
    one = payload_item(tmp_path, "C:\\k\\a.exe", b"a")
    two = payload_item(tmp_path, "C:\\k\\b.exe", b"b")
    first = await cache.archive((one, two))
    built = first.stat().st_mtime_ns
    assert await cache.archive((two, one)) == first and first.stat().st_mtime_ns == built
    assert await cache.archive((one,)) != first


def test_only_files_on_the_system_drive_become_members() -> None:
    assert archive.member_name("C:\\Program Files\\x\\y.exe") == "Program Files/x/y.exe"
    for bad in ("D:\\k\\x.exe", "C:\\k\\..\\..\\x", "C:\\"):
        with pytest.raises(ValueError):
            archive.member_name(bad)


@pytest.mark.parametrize(
    "text",
    [
        '{\n  "cniVersion": "0.2.0",\n  "name": "it\'s"\n}\n',
        "VIPEndpoint\r\neth0",
        "no newline at all",
        "\n\nblank lines\n\n",
    ],
)
async def test_small_text_is_written_inline_with_its_exact_bytes(
    sink_host: WindowsHost, client: ssh.WindowsHost, text: str
) -> None:
    item = transfer.Content.of_text("C:\\var\\lib\\cni\\networks\\n\\10.1.0.2", text, "t")
    before = sink_host.traffic.sftp_sessions
    stages = await transfer.stage(client, (item,))
    assert sink_host.traffic.sftp_sessions == before  # written by the script, not uploaded
    result = await client.run(batch.script(stages))
    assert batch.failure(stages, result.exit_status, result.stdout, result.stderr) is None
    assert sink_host.machine.disk.read_file(item.destination) == text.encode()


async def test_text_that_cannot_be_written_inline_is_refused(client: ssh.WindowsHost) -> None:
    for text in ("caf\u00e9\n", "mixed\r\nends\n", "bare\rcr", "nul\0"):
        with pytest.raises(ValueError):
            await transfer.stage(client, (transfer.Content.of_text("C:\\k\\x", text, "x"),))
