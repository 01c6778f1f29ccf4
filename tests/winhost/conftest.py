"""Fixtures for the simulated Windows host: keys, user data, booted hosts, SSH clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncssh
import pytest
from winhost_helpers import connect, enable_containers, make_user_data, public_line

from wmco_sandbox.winhost.host import WindowsHost


@pytest.fixture(scope="session")
def client_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519", comment="wmco")


@pytest.fixture(scope="session")
def other_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519", comment="intruder")


@pytest.fixture
def user_data(client_key: asyncssh.SSHKey) -> str:
    return make_user_data(public_line(client_key))


@pytest.fixture
async def host(user_data: str) -> AsyncIterator[WindowsHost]:
    h = WindowsHost(image="2022")
    h.faults.reboot_unreachable = 0.05
    await h.boot(user_data)
    assert h.userdata_results[-1].code == 0, h.userdata_results[-1].stderr
    yield h
    await h.stop()


@pytest.fixture
async def conn(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    c = await connect(host, client_key)
    yield c
    c.close()
    await c.wait_closed()


@pytest.fixture(autouse=True)
def full_exit_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncssh's CLIENT masks exit-status to 8 bits; unmask it so tests see what the host sent."""
    from asyncssh.channel import SSHClientChannel

    def process_exit_status(
        self: SSHClientChannel[bytes], packet: asyncssh.packet.SSHPacket
    ) -> bool:
        status = packet.get_uint32()
        packet.check_end()
        self._exit_status = status
        self._session.exit_status_received(status)
        return True

    monkeypatch.setattr(SSHClientChannel, "_process_exit_status_request", process_exit_status)


@pytest.fixture
async def containers_host(host: WindowsHost) -> WindowsHost:
    """The booted host with the Containers feature installed and the reboot done."""
    await enable_containers(host)
    return host
