"""The simulated host under the key-rotation command: sshd reads the file at each new connection.

:func:`wmco.windows.commands.authorize_key` against a booted host, over SSH, as the operator sends
it: the new key logs in on a NEW connection at once (no sshd restart), an administrator's own
line survives, the ACL sshd's StrictModes demands is set again, revoked keys are refused.
"""

from __future__ import annotations

import asyncssh
import pytest
from winhost_helpers import connect, public_line

from wmco import settings as settings_mod
from wmco.windows import commands, ssh, sshfailures
from wmco_sandbox.winhost.core.disk import FileNode
from wmco_sandbox.winhost.host import WindowsHost

ADMIN_KEYS = commands.AUTHORIZED_KEYS_PATH
OTHER_LINE = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHmI+2sNEsT1E/L5hQewTSZNU37s7S6Tah7+LxKzma+2 admin"
)


def authorize(key: asyncssh.SSHKey, revoke: tuple[asyncssh.SSHKey, ...] = ()) -> str:
    key_type, blob = public_line(key).split()[:2]
    return commands.authorize_key(
        key_type, blob, "wmco", revoke=[public_line(k).split()[1] for k in revoke]
    )


async def refused(host: WindowsHost, key: asyncssh.SSHKey) -> bool:
    try:
        conn = await connect(host, key)
    except asyncssh.PermissionDenied:
        return True
    conn.close()
    return False


def lines(host: WindowsHost) -> list[str]:
    return host.machine.disk.read_file(ADMIN_KEYS).decode("ascii").splitlines()


async def test_a_new_key_logs_in_at_once_and_the_old_one_is_refused_once_revoked(
    host: WindowsHost, conn: asyncssh.SSHClientConnection, client_key: asyncssh.SSHKey
) -> None:
    new = asyncssh.generate_private_key("ssh-ed25519")
    content = [*lines(host), OTHER_LINE]
    host.machine.disk.write_file(ADMIN_KEYS, ("\r\n".join(content) + "\r\n").encode())
    assert await refused(host, new)

    added = await conn.run(authorize(new), check=False)

    assert added.exit_status == 0, added.stderr
    assert "Successfully processed 1 files" in str(added.stdout)
    fresh = await connect(host, new)  # a NEW connection: sshd re-read the file
    assert not await refused(host, client_key), "the old key stays until it is revoked"
    revoked = await fresh.run(authorize(new, revoke=(client_key,)), check=False)
    assert revoked.exit_status == 0, revoked.stderr
    assert await refused(host, client_key)
    assert not await refused(host, new)
    assert lines(host) == [OTHER_LINE, f"{public_line(new)} wmco"]
    node = host.machine.disk.get(ADMIN_KEYS)
    assert isinstance(node, FileNode) and node.restricted_acl
    fresh.close()


async def test_the_command_is_idempotent(
    host: WindowsHost, conn: asyncssh.SSHClientConnection, client_key: asyncssh.SSHKey
) -> None:
    for _ in range(2):
        result = await conn.run(authorize(client_key), check=False)
        assert result.exit_status == 0, result.stderr
    assert [line.split()[1] for line in lines(host)] == [public_line(client_key).split()[1]]


async def test_a_loosened_acl_is_restricted_again(
    host: WindowsHost, conn: asyncssh.SSHClientConnection, client_key: asyncssh.SSHKey
) -> None:
    node = host.machine.disk.get(ADMIN_KEYS)
    assert isinstance(node, FileNode)
    node.acl_inherit = True  # someone reset the ACL: sshd now ignores the file
    assert await refused(host, client_key)
    # The operator's open connection still works; the command puts the ACL back.
    result = await conn.run(authorize(client_key), check=False)
    assert result.exit_status == 0, result.stderr
    assert not await refused(host, client_key)


async def test_a_missing_file_fails_with_exit_status_1_and_writes_nothing(
    host: WindowsHost, conn: asyncssh.SSHClientConnection, client_key: asyncssh.SSHKey
) -> None:
    host.machine.disk.remove(ADMIN_KEYS)
    result = await conn.run(authorize(client_key), check=False)
    assert result.exit_status == 1
    assert "Cannot find path" in str(result.stderr)
    assert host.machine.disk.get(ADMIN_KEYS) is None


async def test_the_client_offers_fallback_keys_in_one_exchange_and_says_which_was_accepted(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    new = asyncssh.generate_private_key("ssh-ed25519")
    config = settings_mod.Settings(
        ssh_connect_timeout=5, ssh_auth_grace=0.1, ssh_retry_interval=0.1
    )
    rotating = ssh.WindowsHost(
        host.address,
        "Administrator",
        new,
        settings=config,
        port=host.port,
        fallback_keys=(client_key,),
    )
    await rotating.connect(within=0)
    assert rotating.key_in_use is client_key
    assert (await rotating.run("hostname")).ok
    await rotating.close()
    only_new = ssh.WindowsHost(host.address, "Administrator", new, settings=config, port=host.port)
    with pytest.raises(sshfailures.AuthenticationError, match="refused with the private key"):
        await only_new.connect(within=0)
