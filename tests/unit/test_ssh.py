"""The SSH layer: host-key pinning decisions, path mapping, output decoding, and one real
loopback connection (an in-process asyncssh server) for connect, run, timeouts, drops, SFTP,
key mismatch, refused keys and unreachable hosts.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import asyncssh
import pytest

from wmco import settings
from wmco.windows import sftp, ssh, sshfailures, sshkeys

CLIENT_KEY = asyncssh.generate_private_key("ssh-ed25519")
HOST_KEY = asyncssh.generate_private_key("ssh-ed25519")
OTHER_HOST_KEY = asyncssh.generate_private_key("ecdsa-sha2-nistp256")


def host_key(key: asyncssh.SSHKey) -> sshkeys.HostKey:
    return sshkeys.HostKey.from_ssh_key(key)


# --- Pure pieces -------------------------------------------------------------------------------


def test_first_use_match_and_mismatch() -> None:
    seen = host_key(HOST_KEY)
    assert sshkeys.check_host_key(None, seen) is sshkeys.HostKeyCheck.FIRST_USE
    assert sshkeys.check_host_key(host_key(HOST_KEY), seen) is sshkeys.HostKeyCheck.MATCH
    assert sshkeys.check_host_key(host_key(OTHER_HOST_KEY), seen) is sshkeys.HostKeyCheck.MISMATCH


def test_host_key_round_trips_through_annotations() -> None:
    key = host_key(HOST_KEY)
    assert key.key_type == "ssh-ed25519"
    assert sshkeys.HostKey.from_annotation(key.b64, key.key_type) == key
    assert sshkeys.HostKey.from_annotation(key.b64, "") == key
    assert key.fingerprint == HOST_KEY.get_fingerprint("sha256")


@pytest.mark.parametrize(("b64", "key_type"), [("%%%", "ssh-ed25519"), ("AAAA", "ssh-ed25519")])
def test_bad_annotations_are_rejected(b64: str, key_type: str) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        sshkeys.HostKey.from_annotation(b64, key_type)


def test_annotation_type_must_match_the_key() -> None:
    with pytest.raises(ValueError, match="type annotation"):
        sshkeys.HostKey.from_annotation(host_key(HOST_KEY).b64, "ssh-rsa")


def test_mismatch_error_names_both_fingerprints_and_the_way_out() -> None:
    pinned, seen = host_key(HOST_KEY), host_key(OTHER_HOST_KEY)
    error = sshfailures.HostKeyMismatchError("10.0.0.5", pinned, seen)
    text = str(error)
    assert "10.0.0.5" in text and pinned.fingerprint in text and seen.fingerprint in text
    assert "ssh-host-key" not in text or "annotation" in text


@pytest.mark.parametrize(
    ("windows", "remote"),
    [
        ("C:\\k\\kubelet.exe", "/C:/k/kubelet.exe"),
        ("C:\\k\\cni\\config\\cni.conf", "/C:/k/cni/config/cni.conf"),
        ("d:\\x", "/d:/x"),
    ],
)
def test_sftp_path(windows: str, remote: str) -> None:
    assert sftp.sftp_path(windows) == remote


@pytest.mark.parametrize("bad", ["k\\x", "\\k\\x", "C:x", "\\\\server\\share\\x"])
def test_sftp_path_needs_a_drive(bad: str) -> None:
    with pytest.raises(ValueError):
        sftp.sftp_path(bad)


def test_decode_output() -> None:
    assert ssh.decode_output(b"a\r\nb\r\n") == "a\nb\n"
    assert ssh.decode_output("x\r\n") == "x\n"
    assert ssh.decode_output(None) == ""
    assert ssh.decode_output(b"caf\x82\r\n") == "café\n"  # CP437 fallback
    assert ssh.decode_output("é".encode()) == "é"


def test_result_ok() -> None:
    assert ssh.Result(0, "", "").ok
    assert not ssh.Result(1060, "", "").ok
    assert not ssh.Result(None, "", "").ok


def test_load_ssh_key_errors_hide_the_key() -> None:
    secret = b"-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END"
    with pytest.raises(sshkeys.SshKeyError) as info:
        sshkeys.load_ssh_key(secret)
    assert "c2VjcmV0" not in str(info.value)
    pem = CLIENT_KEY.export_private_key()
    assert sshkeys.load_ssh_key(pem).public_data == CLIENT_KEY.public_data


# --- Loopback server ---------------------------------------------------------------------------


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == "Administrator" and key.public_data == CLIENT_KEY.public_data


async def _handle(process: Any) -> None:
    command = process.command
    if command == "hang":
        await asyncio.sleep(30)
    elif command == "drop":
        process.channel.get_connection().abort()
        return
    process.stdout.write(f"ran {command}\r\nline two\r\n")
    process.stderr.write("warn\r\n")
    process.exit(0 if command == "Get-Help" else 60)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.01)
        await asyncio.sleep(0)


@pytest.fixture
async def server(tmp_path: pathlib.Path) -> AsyncIterator[tuple[int, pathlib.Path]]:
    root = tmp_path / "disk"
    (root / "C:" / "k").mkdir(parents=True)

    def sftp_factory(channel: Any) -> asyncssh.SFTPServer:
        return asyncssh.SFTPServer(channel, chroot=str(root).encode())

    listener = await asyncssh.create_server(
        _Server,
        "127.0.0.1",
        0,
        server_host_keys=[HOST_KEY],
        process_factory=_handle,
        sftp_factory=sftp_factory,
    )
    port = listener.sockets[0].getsockname()[1]
    yield port, root
    listener.close()
    await listener.wait_closed()


def make_host(port: int, **kwargs: Any) -> ssh.WindowsHost:
    fake = FakeTime()
    config = settings.Settings(
        ssh_port=port,
        ssh_boot_deadline=2,
        ssh_auth_grace=1,
        ssh_retry_interval=0.25,
        ssh_command_timeout=5,
        ssh_connect_timeout=5,
    )
    kwargs.setdefault("private_key", CLIENT_KEY)
    return ssh.WindowsHost(
        "127.0.0.1",
        "Administrator",
        settings=config,
        clock=fake.clock,
        sleep=fake.sleep,
        **kwargs,
    )


async def test_first_use_reports_the_key_and_commands_run(
    server: tuple[int, pathlib.Path],
) -> None:
    port, root = server
    reported: list[sshkeys.HostKey] = []

    async def remember(key: sshkeys.HostKey) -> None:
        reported.append(key)

    async with make_host(port, on_first_use=remember) as host:
        assert reported == [host_key(HOST_KEY)]
        assert host.host_key == host_key(HOST_KEY)
        result = await host.run("Get-Help")
        assert result == ssh.Result(0, "ran Get-Help\nline two\n", "warn\n")
        assert (await host.run("sc.exe qc 'x'")).exit_status == 60
        await host.put_bytes(b"hello", "C:\\k\\hello.txt")
        source = root.parent / "local.bin"
        source.write_bytes(b"\x00" * 5000)
        await host.put_file(source, "C:\\k\\local.bin")
    assert (root / "C:" / "k" / "hello.txt").read_bytes() == b"hello"
    assert (root / "C:" / "k" / "local.bin").read_bytes() == b"\x00" * 5000


async def test_pinned_key_is_accepted_without_first_use_report(
    server: tuple[int, pathlib.Path],
) -> None:
    port, _ = server
    reported: list[sshkeys.HostKey] = []

    async def remember(key: sshkeys.HostKey) -> None:
        reported.append(key)

    async with make_host(port, pinned_host_key=host_key(HOST_KEY), on_first_use=remember) as host:
        assert (await host.run("Get-Help")).ok
    assert reported == []


async def test_first_use_is_reported_again_if_persisting_failed(
    server: tuple[int, pathlib.Path],
) -> None:
    port, _ = server
    calls: list[sshkeys.HostKey] = []

    async def flaky(key: sshkeys.HostKey) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("API server unavailable")

    host = make_host(port, on_first_use=flaky)
    with pytest.raises(RuntimeError):
        await host.connect()
    assert host.host_key is None and not host.connected
    await host.connect()
    assert calls == [host_key(HOST_KEY), host_key(HOST_KEY)]
    await host.close()


async def test_other_key_is_refused_at_once(server: tuple[int, pathlib.Path]) -> None:
    port, _ = server
    host = make_host(port, pinned_host_key=host_key(OTHER_HOST_KEY))
    with pytest.raises(sshfailures.HostKeyMismatchError) as info:
        await host.connect()
    assert info.value.seen == host_key(HOST_KEY)
    assert not host.connected


async def test_timeout_drop_and_reconnect(server: tuple[int, pathlib.Path]) -> None:
    port, _ = server
    async with make_host(port) as host:
        with pytest.raises(sshfailures.CommandTimeoutError, match="probe"):
            await host.run("hang", timeout=0.2, what="probe")
        dropped = await host.run("drop")
        assert dropped.exit_status is None
        again = await host.run("after")
        assert again.stdout.startswith("ran after")
        assert host.host_key == host_key(HOST_KEY)


async def test_refused_key_becomes_authentication_error_after_grace(
    server: tuple[int, pathlib.Path],
) -> None:
    port, _ = server
    host = make_host(port, private_key=asyncssh.generate_private_key("ssh-ed25519"))
    with pytest.raises(sshfailures.AuthenticationError, match="Administrator"):
        await host.connect()


async def test_closed_port_becomes_unreachable_after_deadline(
    server: tuple[int, pathlib.Path],
) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    free_port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    host = make_host(free_port)
    with pytest.raises(sshfailures.UnreachableError, match="attempts"):
        await host.connect()
