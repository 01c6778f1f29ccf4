"""Restart-Computer: the connection drops without exit status, the host is unreachable, then back."""

from __future__ import annotations

import asyncssh
import pytest
from winhost_helpers import connect, wait_for

from wmco_sandbox.winhost.host import WindowsHost


async def test_reboot_drops_then_returns(host: WindowsHost, client_key: asyncssh.SSHKey) -> None:
    host.faults.reboot_unreachable = 0.3
    conn = await connect(host, client_key)
    key_before = host.host_public_key.export_public_key()
    try:
        result = await conn.run("Restart-Computer -Force", check=False)
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError):
        pass
    else:
        assert result.exit_status is None
        assert result.exit_signal is None
    assert host.command_log[-1].exit_status is None
    await wait_for(lambda: not host.listening)
    with pytest.raises(OSError):
        await connect(host, client_key)
    await host.wait_rebooted()
    assert host.boot_count == 2
    conn2 = await connect(host, client_key)
    r = await conn2.run("hostname", check=False)
    assert r.exit_status == 0
    assert host.host_public_key.export_public_key() == key_before
    conn2.close()


async def test_never_returns(host: WindowsHost, client_key: asyncssh.SSHKey) -> None:
    host.faults.never_return_from_reboot = True
    await host.reboot()
    assert not host.listening
    with pytest.raises(OSError):
        await connect(host, client_key)
