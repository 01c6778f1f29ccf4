"""The operator connects from a user id without a name (OpenShift's arbitrary user ids).

asyncssh asks ``getpass.getuser()`` for every connection; with no ``LOGNAME``/``USER`` set and a
user id the password database does not know, that raises, and asyncssh refuses to connect
("Unknown local username"). ``ssh.ensure_local_username`` gives it a name once.
"""

from __future__ import annotations

import getpass
import pwd

import asyncssh
import pytest

from wmco import settings
from wmco.windows import ssh, sshkeys
from wmco_sandbox.winhost.host import WindowsHost


def _no_such_user(uid: int) -> pwd.struct_passwd:
    raise KeyError(f"getpwuid(): uid not found: {uid}")


async def test_a_user_id_without_a_name_still_connects(
    host: WindowsHost, client_key: asyncssh.SSHKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ssh.LOCAL_USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", _no_such_user)
    with pytest.raises(KeyError):  # what asyncssh would have met
        getpass.getuser()
    config = settings.Settings(ssh_port=host.port, ssh_boot_deadline=5, ssh_connect_timeout=5)
    remote = ssh.WindowsHost(
        host.address,
        "Administrator",
        client_key,
        settings=config,
        pinned_host_key=sshkeys.HostKey.from_ssh_key(host.host_public_key),
    )
    try:
        await remote.connect()
        assert (await remote.run("hostname")).ok
    finally:
        await remote.close()
    assert ssh.ensure_local_username() == ssh.FALLBACK_LOCAL_USER


async def test_a_named_user_keeps_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ssh.LOCAL_USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: pwd.struct_passwd(("alice",) + ("",) * 6))
    assert ssh.ensure_local_username() == "alice"
