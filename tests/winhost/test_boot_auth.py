"""User data boot: the host knows our user data only through what the script does."""

from __future__ import annotations

import asyncssh
import pytest
from winhost_helpers import connect, make_user_data, public_line

from wmco_sandbox.winhost.host import WindowsHost


async def booted(user_data: str | None, **options: object) -> WindowsHost:
    host = WindowsHost(**options)  # type: ignore[arg-type]
    await host.boot(user_data)
    return host


async def test_right_key_accepted_other_refused(
    client_key: asyncssh.SSHKey, other_key: asyncssh.SSHKey
) -> None:
    host = await booted(make_user_data(public_line(client_key)))
    try:
        conn = await connect(host, client_key)
        r = await conn.run("Get-Help", check=False)
        assert r.exit_status == 0
        conn.close()
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(host, other_key)
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(host, client_key, user="Guest")
    finally:
        await host.stop()


async def test_two_keys_during_rotation(
    client_key: asyncssh.SSHKey, other_key: asyncssh.SSHKey
) -> None:
    host = await booted(make_user_data(public_line(client_key), public_line(other_key)))
    try:
        for key in (client_key, other_key):
            (await connect(host, key)).close()
    finally:
        await host.stop()


async def test_no_user_data_refuses_connections(client_key: asyncssh.SSHKey) -> None:
    host = await booted(None)
    try:
        assert not host.listening
        with pytest.raises(OSError):
            await connect(host, client_key)
    finally:
        await host.stop()


async def test_no_user_data_preinstalled_sshd_refuses_every_key(
    client_key: asyncssh.SSHKey,
) -> None:
    host = await booted(None, preinstalled_sshd=True)
    try:
        assert host.listening
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(host, client_key)
    finally:
        await host.stop()


async def test_bad_acl_refuses(client_key: asyncssh.SSHKey) -> None:
    host = await booted(make_user_data(public_line(client_key), icacls=False))
    try:
        assert host.userdata_results[-1].code == 0
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(host, client_key)
    finally:
        await host.stop()


async def test_utf16_key_file_ignored(client_key: asyncssh.SSHKey) -> None:
    data = make_user_data(public_line(client_key)).replace("-Encoding ascii", "-Encoding Unicode")
    host = await booted(data)
    try:
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(host, client_key)
    finally:
        await host.stop()


async def test_2019_without_capability_fails_to_configure(client_key: asyncssh.SSHKey) -> None:
    host = await booted(make_user_data(public_line(client_key), capability=False), image="2019")
    try:
        result = host.userdata_results[-1]
        assert result.code == 1
        assert (
            "Cannot find path 'HKLM:\\SOFTWARE\\OpenSSH' because it does not exist."
            in result.stderr
        )
        with pytest.raises(OSError):
            await connect(host, client_key)
    finally:
        await host.stop()


async def test_2025_ships_openssh(client_key: asyncssh.SSHKey) -> None:
    host = await booted(make_user_data(public_line(client_key), capability=False), image="2025")
    try:
        conn = await connect(host, client_key)
        r = await conn.run(
            "(Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion').CurrentBuildNumber",
            check=False,
        )
        assert r.stdout == "26100\r\n"
        conn.close()
    finally:
        await host.stop()


async def test_rsa_host_key_and_firewall(client_key: asyncssh.SSHKey) -> None:
    host = await booted(make_user_data(public_line(client_key)), host_key_type="rsa")
    try:
        assert host.host_public_key.algorithm == b"ssh-rsa"
        assert host.machine.firewall_allows(22)
        assert host.machine.firewall_allows(10250) and host.machine.firewall_allows(9182)
        assert not host.machine.firewall_allows(6443)
        (await connect(host, client_key)).close()
    finally:
        await host.stop()


async def test_without_default_shell_commands_run_in_cmd(client_key: asyncssh.SSHKey) -> None:
    host = await booted(make_user_data(public_line(client_key), shell=False))
    try:
        conn = await connect(host, client_key)
        r = await conn.run("Get-Help", check=False)
        assert r.exit_status == 1
        assert r.stderr == (
            "'Get-Help' is not recognized as an internal or external command,\r\n"
            "operable program or batch file.\r\n"
        )
        assert host.command_log[-1].shell == "cmd"
        conn.close()
    finally:
        await host.stop()
