"""The runner: how the flows talk to one host, and how they survive connectivity blips.

Every command and file of a flow goes through a :class:`Runner`. It

- connects with the pinned host key (:mod:`wmco.nodeconfig.hostkeys`), turning a changed key into
  :class:`HostKeyChangedError` (never retried);
- knows the current :class:`Step`, so every failure becomes a :class:`ConfigurationError` naming
  host, step and cause;
- absorbs *connectivity blips* (contract §3): creating the first network that needs a vSwitch
  (hybrid-overlay-node, in the background, a few hundred ms after it starts) or removing the last
  one drops every SSH connection. A command or upload that loses its connection is re-dialled
  (same pinned key, the usual connect deadline) and sent again; it does not count as a failure.
  Every command of the flows is idempotent, so sending it again is safe; the one that is not
  (creating the VIP endpoint) uses :meth:`Runner.attempt`, which reports the drop instead and
  lets its step look again before retrying.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeVar

from lightkube.resources.core_v1 import Node

from wmco import kube, names
from wmco.nodeconfig import hostkeys
from wmco.nodeconfig.instance import (
    ConfigurationError,
    HostKeyChangedError,
    Inputs,
    Instance,
    Step,
)
from wmco.windows import answers, commands, ssh

log = logging.getLogger(__name__)

_T = TypeVar("_T")

MAX_BLIPS: Final = 8
"""Dropped connections tolerated for one command before it counts as a failure."""


class Connection(Protocol):
    """What the runner needs from a connection (:class:`wmco.windows.ssh.WindowsHost`)."""

    address: str

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now."""
        ...

    @property
    def host_key(self) -> ssh.HostKey | None:
        """The pinned key."""
        ...

    async def run(
        self, command: str, *, timeout: float | None = None, what: str = "command"
    ) -> ssh.Result:
        """Run one command."""
        ...

    async def put_file(self, source: pathlib.Path, destination: str) -> None:
        """Upload one local file."""
        ...

    async def put_bytes(self, data: bytes, destination: str, *, what: str = "file") -> None:
        """Write bytes to one file."""
        ...

    async def reconnect(self, *, within: float | None = None) -> ssh.HostKey:
        """Close and connect again."""
        ...

    async def close(self) -> None:
        """Close the connection."""
        ...


class Runner:
    """Runs commands on one host; see the module docstring.

    Attributes:
        host: The connection.
        address: The instance's address (for messages).
        step: The step being run (for messages); the flow sets it.
        blips: Dropped connections absorbed so far.
    """

    def __init__(self, host: Connection, address: str, *, reconnect_within: float) -> None:
        self.host = host
        self.address = address
        self.step = Step.CONNECT
        self.blips = 0
        self._reconnect_within = reconnect_within

    @property
    def connected(self) -> bool:
        """Whether the connection is open now."""
        return self.host.connected

    def fail(self, message: str) -> ConfigurationError:
        """A :class:`ConfigurationError` of the current step."""
        return ConfigurationError(self.address, self.step, message)

    async def redial(self, what: str) -> None:
        """Connect again after a drop, within the connect deadline.

        Raises:
            HostKeyChangedError: The host came back with another key.
            ConfigurationError: It did not come back in time.
        """
        self.blips += 1
        log.info(
            "host %s: connection dropped during %s (step %s); reconnecting",
            self.address,
            what,
            self.step,
        )
        try:
            await self.host.reconnect(within=self._reconnect_within)
        except ssh.HostKeyMismatchError as exc:
            raise HostKeyChangedError(self.address, self.step, str(exc)) from None
        except ssh.SshError as exc:
            raise self.fail(f"connection lost during {what} and not regained: {exc}") from None

    async def run(
        self, command: str, *, timeout: float | None = None, what: str = "command"
    ) -> ssh.Result:
        """Run a command, sending it again after a dropped connection; any exit status returns.

        Raises:
            ConfigurationError: The command timed out, or the connection kept dropping.
        """
        for _ in range(MAX_BLIPS + 1):
            if not self.host.connected:
                # Dropped in the background since the last command (a blip between commands).
                await self.redial(what)
            try:
                result = await self.host.run(command, timeout=timeout, what=what)
            except ssh.CommandTimeoutError as exc:
                raise self.fail(str(exc)) from None
            except (ssh.HostKeyMismatchError, ssh.AuthenticationError) as exc:
                raise self._refused(exc) from None
            except ssh.SshError:
                result = ssh.Result(exit_status=None, stdout="", stderr="")
            if result.exit_status is not None:
                return result
            await self.redial(what)
        raise self.fail(f"the connection dropped {MAX_BLIPS + 1} times during {what}")

    def _refused(self, exc: ssh.SshError) -> ConfigurationError:
        if isinstance(exc, ssh.HostKeyMismatchError):
            return HostKeyChangedError(self.address, self.step, str(exc))
        return self.fail(str(exc))

    async def attempt(
        self, command: str, what: str, *, ok: tuple[int, ...] = (0,)
    ) -> ssh.Result | None:
        """Run a non-idempotent command once: ``None`` when the connection dropped (redialled).

        Raises:
            ConfigurationError: The command failed with a status outside ``ok``.
        """
        if not self.host.connected:
            await self.redial(what)
        try:
            result = await self.host.run(command, what=what)
        except ssh.CommandTimeoutError as exc:
            raise self.fail(str(exc)) from None
        except (ssh.HostKeyMismatchError, ssh.AuthenticationError) as exc:
            raise self._refused(exc) from None
        except ssh.SshError:
            result = ssh.Result(exit_status=None, stdout="", stderr="")
        if result.exit_status is None:
            await self.redial(what)
            return None
        return self._checked(result, what, ok)

    async def check(
        self,
        command: str,
        what: str,
        *,
        ok: tuple[int, ...] = (0,),
        timeout: float | None = None,
        clean_stderr: bool = False,
    ) -> ssh.Result:
        """:meth:`run`, then refuse an exit status outside ``ok``.

        Args:
            command: The command.
            what: What it does, for messages.
            ok: Accepted exit statuses.
            timeout: Seconds allowed.
            clean_stderr: Also refuse any error text. An error inside ``@(...)`` ends only that
                inner statement, so ``ConvertTo-Json -InputObject @(Get-HnsNetwork)`` on a host
                without the cmdlet prints its error, then ``[]``, and exits 0.

        Raises:
            ConfigurationError: The status is not in ``ok`` (the message has the last stderr
                line), or :meth:`run` failed.
        """
        result = self._checked(await self.run(command, timeout=timeout, what=what), what, ok)
        if clean_stderr and result.stderr.strip():
            detail = result.stderr.strip().splitlines()[0]
            raise self.fail(f"{what} reported an error: {detail[:300]}")
        return result

    def _checked(self, result: ssh.Result, what: str, ok: tuple[int, ...]) -> ssh.Result:
        if result.exit_status not in ok:
            lines = result.stderr.strip().splitlines() or result.stdout.strip().splitlines()
            detail = lines[-1:] or ["no error text"]
            raise self.fail(
                f"{what} failed with exit status {result.exit_status}: {detail[0][:300]}"
            )
        return result

    async def _upload(self, upload: Callable[[], Awaitable[None]], what: str) -> None:
        for _ in range(MAX_BLIPS + 1):
            if not self.host.connected:
                await self.redial(what)
            try:
                await upload()
                return
            except (ssh.HostKeyMismatchError, ssh.AuthenticationError) as exc:
                raise self._refused(exc) from None
            except ssh.SshError as exc:
                if self.host.connected:
                    raise self.fail(str(exc)) from None
            await self.redial(what)
        raise self.fail(f"the connection dropped {MAX_BLIPS + 1} times during {what}")

    async def put_file(self, source: pathlib.Path, destination: str) -> None:
        """Upload a local file, again after a dropped connection.

        Raises:
            ConfigurationError: The upload failed on a live connection (e.g. the file is held by
                a running program), or the connection kept dropping.
        """
        await self._upload(
            lambda: self.host.put_file(source, destination), f"upload to {destination}"
        )

    async def put_bytes(self, data: bytes, destination: str, *, what: str = "file") -> None:
        """Write bytes to a file, again after a dropped connection (see :meth:`put_file`)."""
        await self._upload(
            lambda: self.host.put_bytes(data, destination, what=what), f"write of {what}"
        )

    async def close(self) -> None:
        """Close the connection."""
        await self.host.close()


async def connect(
    client: kube.Client,
    instance: Instance,
    inputs: Inputs,
    node: Node | None,
    *,
    within: float | None = None,
) -> Runner:
    """Open the SSH connection to an instance, pinning or checking its host key.

    Args:
        client: API client (the pinned key lives in a ConfigMap or on the Node).
        instance: The instance.
        inputs: Key and settings.
        node: The instance's Node, if any (its pinned key wins).
        within: Seconds to keep trying; ``settings.ssh_boot_deadline`` when omitted (redials
            always use that deadline).

    Raises:
        HostKeyChangedError: The host presented another key than the pinned one.
        ConfigurationError: No connection (the message says why).
    """
    settings = inputs.settings
    pinned = await hostkeys.pinned(client, settings.namespace, instance.address, node)

    async def on_first_use(key: ssh.HostKey) -> None:
        await hostkeys.remember(client, settings.namespace, instance.address, key)

    try:
        key = ssh.load_ssh_key(inputs.private_key_pem)
    except ssh.SshKeyError as exc:
        raise ConfigurationError(instance.address, Step.CONNECT, str(exc)) from None
    host = ssh.WindowsHost(
        instance.address,
        instance.username,
        key,
        settings=settings,
        pinned_host_key=pinned,
        on_first_use=on_first_use,
        port=instance.ssh_port,
    )
    try:
        await host.connect(within=settings.ssh_boot_deadline if within is None else within)
    except ssh.HostKeyMismatchError as exc:
        raise HostKeyChangedError(
            instance.address,
            Step.CONNECT,
            f"{exc}; if the host was really reinstalled, delete its pinned key (ConfigMap "
            f"{names.SSH_HOST_KEYS_CONFIGMAP} entry or the Node's {names.SSH_HOST_KEY_ANNOTATION} "
            "annotation)",
        ) from None
    except ssh.SshError as exc:
        raise ConfigurationError(instance.address, Step.CONNECT, str(exc)) from None
    return Runner(host, instance.address, reconnect_within=settings.ssh_boot_deadline)


async def reboot(runner: Runner, boot_deadline: float, command_timeout: float) -> None:
    """Restart Windows and reconnect once it answers again.

    Raises:
        ConfigurationError: The host did not come back in time.
    """
    # The connection drops while Restart-Computer runs; that is the expected answer.
    with contextlib.suppress(ssh.SshError):
        await runner.host.run(commands.reboot(), what="reboot", timeout=command_timeout)
    await runner.host.close()
    try:
        await runner.host.reconnect(within=boot_deadline)
    except ssh.HostKeyMismatchError as exc:
        raise HostKeyChangedError(runner.address, runner.step, str(exc)) from None
    except ssh.SshError as exc:
        raise runner.fail(f"host did not come back after reboot: {exc}") from None


def parsed(runner: Runner, parse: Callable[[str], _T], result: ssh.Result) -> _T:
    """Parse a command's stdout, turning a shape error into a :class:`ConfigurationError`."""
    try:
        return parse(result.stdout)
    except answers.CommandOutputError as exc:
        raise runner.fail(str(exc)) from None
