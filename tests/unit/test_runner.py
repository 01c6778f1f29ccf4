"""The runner absorbs connectivity blips; the VIP endpoint step survives one mid-creation.

A fake connection stands in for SSH (the simulated host is for integration tests): it answers the
exact command strings and can drop the connection on chosen commands, as creating or removing the
host's first vSwitch network does (contract §3).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable

import pytest

from wmco import names
from wmco.nodeconfig import network
from wmco.nodeconfig.instance import ConfigurationError, HostKeyChangedError, Step
from wmco.nodeconfig.runner import MAX_BLIPS, Runner
from wmco.windows import answers, commands, layout, ssh, sshfailures, sshkeys

KEY = sshkeys.HostKey("ssh-ed25519", b"k")
NETWORK_ID = "6A3E5C31-2B1F-4D8E-9F0A-1C2D3E4F5A6B"


class FakeConnection:
    """Answers commands through ``answer``; ``drops`` lists commands whose next run drops."""

    address = "10.0.0.5"

    def __init__(self, answer: Callable[[str], ssh.Result]) -> None:
        self.answer = answer
        self.drops: list[str] = []
        self.sent: list[str] = []
        self.reconnects = 0
        self.connected = True
        self.host_key: sshkeys.HostKey | None = KEY
        self.reconnect_error: sshfailures.SshError | None = None
        self.upload_error: sshfailures.SshError | None = None
        self.uploads: list[str] = []

    async def run(
        self, command: str, *, timeout: float | None = None, what: str = "command"
    ) -> ssh.Result:
        assert self.connected, "the runner must redial before sending"
        self.sent.append(command)
        if command in self.drops:
            self.drops.remove(command)
            self.connected = False
            return ssh.Result(None, "", "")
        return self.answer(command)

    async def put_file(self, source: pathlib.Path, destination: str) -> None:
        raise AssertionError("the runner tests upload bytes only")

    async def put_bytes(self, data: bytes, destination: str, *, what: str = "file") -> None:
        if self.upload_error is not None:
            error, self.upload_error = self.upload_error, None
            raise error
        self.uploads.append(destination)

    async def reconnect(self, *, within: float | None = None) -> sshkeys.HostKey:
        self.reconnects += 1
        if self.reconnect_error is not None:
            raise self.reconnect_error
        self.connected = True
        return KEY

    async def close(self) -> None:
        self.connected = False


def ok(command: str) -> ssh.Result:
    return ssh.Result(0, "done\n", "")


def runner_for(connection: FakeConnection) -> Runner:
    runner = Runner(connection, connection.address, reconnect_within=5.0)
    runner.step = Step.SERVICES
    return runner


async def test_a_dropped_command_is_redialled_and_sent_again() -> None:
    connection = FakeConnection(ok)
    start = commands.start_service("hybrid-overlay-node")
    connection.drops = [start]
    runner = runner_for(connection)
    result = await runner.check(start, "start of hybrid-overlay-node")
    assert result.ok
    assert connection.sent == [start, start]
    assert (connection.reconnects, runner.blips) == (1, 1)


async def test_a_drop_between_commands_is_redialled_before_the_next() -> None:
    connection = FakeConnection(ok)
    runner = runner_for(connection)
    connection.connected = False  # hybrid-overlay-node made its base network in the background
    assert (await runner.check(commands.hostname(), "hostname")).ok
    assert connection.reconnects == 1


async def test_too_many_drops_fail_the_step() -> None:
    connection = FakeConnection(ok)
    command = commands.hostname()
    connection.drops = [command] * (MAX_BLIPS + 1)
    with pytest.raises(ConfigurationError, match="step services: the connection dropped"):
        await runner_for(connection).check(command, "hostname")


async def test_a_changed_host_key_on_redial_is_refused() -> None:
    connection = FakeConnection(ok)
    connection.drops = [commands.hostname()]
    connection.reconnect_error = sshfailures.HostKeyMismatchError(
        "10.0.0.5", KEY, sshkeys.HostKey("x", b"y")
    )
    with pytest.raises(HostKeyChangedError):
        await runner_for(connection).check(commands.hostname(), "hostname")


async def test_a_host_that_does_not_come_back_fails_with_the_cause() -> None:
    connection = FakeConnection(ok)
    connection.drops = [commands.hostname()]
    connection.reconnect_error = sshfailures.UnreachableError("10.0.0.5", "no SSH connection")
    with pytest.raises(ConfigurationError, match=r"not regained.*no SSH connection"):
        await runner_for(connection).check(commands.hostname(), "hostname")


async def test_exit_statuses_are_checked_with_the_last_error_line() -> None:
    connection = FakeConnection(lambda c: ssh.Result(1060, "[SC] OpenService FAILED 1060:\n", ""))
    runner = runner_for(connection)
    with pytest.raises(ConfigurationError, match="exit status 1060: \\[SC\\] OpenService FAILED"):
        await runner.check(commands.start_service("kubelet"), "start of kubelet")
    assert (
        await runner.check(commands.start_service("kubelet"), "x", ok=(1060,))
    ).exit_status == 1060


async def test_an_upload_refused_on_a_live_connection_fails_and_a_dropped_one_retries() -> None:
    connection = FakeConnection(ok)
    runner = runner_for(connection)
    connection.upload_error = sshfailures.TransferError(
        "10.0.0.5", "upload failed: PermissionDenied"
    )
    with pytest.raises(ConfigurationError, match="PermissionDenied"):
        await runner.put_bytes(b"x", "C:\\k\\kubelet.exe", what="kubelet")

    connection.upload_error = sshfailures.TransferError("10.0.0.5", "upload failed: ConnectionLost")
    original = connection.put_bytes

    async def dropping(data: bytes, destination: str, *, what: str = "file") -> None:
        if connection.upload_error is not None:
            connection.connected = False
        await original(data, destination, what=what)

    connection.put_bytes = dropping  # type: ignore[method-assign]
    await runner.put_bytes(b"x", "C:\\k\\kubelet.exe", what="kubelet")
    assert connection.uploads == ["C:\\k\\kubelet.exe"] and connection.reconnects == 1


async def test_attempt_reports_a_drop_instead_of_resending() -> None:
    connection = FakeConnection(ok)
    command = commands.hostname()
    connection.drops = [command]
    runner = runner_for(connection)
    assert await runner.attempt(command, "hostname") is None
    assert connection.sent == [command] and connection.connected


# --- The VIP endpoint step, over the fake connection ----------------------------------------------

OVERLAY = answers.HnsNetwork(
    id=NETWORK_ID,
    name=names.HYBRID_OVERLAY_NETWORK,
    type="Overlay",
    management_ip="10.0.0.5",
    address_prefix="10.132.0.0/24",
)


class FakeHns:
    """Endpoints as HNS keeps them, answering the contract's three HNS endpoint forms."""

    def __init__(self) -> None:
        self.endpoints: list[dict[str, object]] = []
        self.created = 0

    def answer(self, command: str) -> ssh.Result:
        if command == commands.list_hns_endpoints():
            return ssh.Result(0, json.dumps(self.endpoints, separators=(",", ":")) + "\r\n", "")
        if command == commands.remove_hns_endpoints(names.VIP_ENDPOINT):
            self.endpoints = [e for e in self.endpoints if e["Name"] != names.VIP_ENDPOINT]
            return ssh.Result(0, "", "")
        if command == commands.create_host_endpoint(
            NETWORK_ID, name=names.VIP_ENDPOINT, module=layout.HNS_MODULE, compartment=1
        ):
            self.created += 1
            endpoint = {
                "ID": f"C0FFEE00-1111-2222-3333-{self.created:012d}",
                "Name": names.VIP_ENDPOINT,
                "VirtualNetwork": NETWORK_ID,
                "IPAddress": f"10.132.0.{self.created + 1}",
            }
            self.endpoints.append(endpoint)
            return ssh.Result(0, json.dumps([endpoint]) + "\r\n", "")
        raise AssertionError(f"unexpected command {command}")


async def test_vip_endpoint_is_created_once_then_reused() -> None:
    hns = FakeHns()
    runner = runner_for(FakeConnection(hns.answer))
    first = await network.ensure_vip_endpoint(runner, OVERLAY, timeout=5)
    again = await network.ensure_vip_endpoint(runner, OVERLAY, timeout=5)
    assert first == again and first.ip_address == "10.132.0.2"
    assert hns.created == 1


async def test_a_stale_vip_endpoint_on_another_network_is_replaced() -> None:
    hns = FakeHns()
    hns.endpoints = [
        {
            "ID": "C0FFEE00-0000-0000-0000-000000000000",
            "Name": "VIPEndpoint",
            "VirtualNetwork": "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",
            "IPAddress": "10.133.0.2",
        },
        {
            "ID": "C0FFEE00-0000-0000-0000-000000000001",
            "Name": "a-pod",
            "VirtualNetwork": NETWORK_ID,
            "IPAddress": "10.132.0.9",
        },
    ]
    runner = runner_for(FakeConnection(hns.answer))
    endpoint = await network.ensure_vip_endpoint(runner, OVERLAY, timeout=5)
    assert endpoint.virtual_network == NETWORK_ID
    assert [e["Name"] for e in hns.endpoints] == ["a-pod", "VIPEndpoint"]


async def test_a_creation_that_lost_its_connection_is_replaced_not_duplicated() -> None:
    hns = FakeHns()
    connection = FakeConnection(hns.answer)
    create = commands.create_host_endpoint(
        NETWORK_ID, name=names.VIP_ENDPOINT, module=layout.HNS_MODULE, compartment=1
    )

    def answer(command: str) -> ssh.Result:
        result = hns.answer(command)
        if command == create and hns.created == 1:
            connection.connected = False  # created, maybe not attached, and no answer
            return ssh.Result(None, "", "")
        return result

    connection.answer = answer
    runner = runner_for(connection)
    endpoint = await network.ensure_vip_endpoint(runner, OVERLAY, timeout=5)
    assert hns.created == 2 and runner.blips == 1
    assert [e["ID"] for e in hns.endpoints] == [endpoint.id], "exactly one VIPEndpoint is left"


async def test_an_hns_list_with_error_text_is_refused_even_with_exit_0() -> None:
    # Without the cmdlet, the error inside @(...) ends only that statement: "[]" and exit 0.
    not_found = (
        "Get-HnsNetwork : The term 'Get-HnsNetwork' is not recognized as the name of a cmdlet, "
        "function, script file, or operable program.\r\n"
    )
    connection = FakeConnection(lambda command: ssh.Result(0, "[]\r\n", not_found))
    runner = runner_for(connection)
    with pytest.raises(
        ConfigurationError, match="HNS network list reported an error: Get-HnsNetwork"
    ):
        await network.wait_for_overlay_network(
            runner, "10.132.0.0/24", timeout=5, progress=_no_progress
        )


async def _no_progress(step: Step, detail: str) -> None:
    return None
