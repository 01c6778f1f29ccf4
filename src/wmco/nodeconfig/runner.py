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

The runner also reports to the flow's :class:`~wmco.nodeconfig.instance.FlowObserver` (the
operator's metrics): every SSH error that reaches it, by kind (a dropped connection it absorbs
counts as ``connection-dropped``), and, once the configure flow calls :meth:`Runner.time_steps`,
how long each step took, measured from one assignment of :attr:`Runner.step` to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pathlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol, TypeVar

import asyncssh
from lightkube.resources.core_v1 import Node

from wmco import kube, names, userdata
from wmco.nodeconfig import hostkeys, slots
from wmco.nodeconfig.instance import (
    NO_OBSERVER,
    ConfigurationError,
    FlowObserver,
    HostKeyChangedError,
    Inputs,
    Instance,
    Step,
)
from wmco.windows import answers, batch, commands, sftp, ssh, ssherrors, sshfailures, sshkeys

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
    def host_key(self) -> sshkeys.HostKey | None:
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

    async def reconnect(self, *, within: float | None = None) -> sshkeys.HostKey:
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
        step: The step being run (for messages and durations); the flow sets it.
        blips: Dropped connections absorbed so far.
        reboots: Restarts of Windows so far (:func:`reboot`).
        pub_key_hash: ``pub-key-hash`` of the private key the host accepted (``connect``).
        slot: The flow's place among the hosts worked on at once, let go while it only waits.
    """

    def __init__(
        self,
        host: Connection,
        address: str,
        *,
        reconnect_within: float,
        observer: FlowObserver = NO_OBSERVER,
        pub_key_hash: str = "",
    ) -> None:
        self.host = host
        self.slot = slots.UNBOUNDED
        self.pub_key_hash = pub_key_hash
        self.address = address
        self.blips = 0
        self.reboots = 0
        self.observer = observer
        self._reconnect_within = reconnect_within
        self._step = Step.CONNECT
        self._step_started: float | None = None

    @property
    def step(self) -> Step:
        """The step being run."""
        return self._step

    @step.setter
    def step(self, value: Step) -> None:
        if value is not self._step:
            self._finish_step()
            if self._step_started is not None:
                self._step_started = time.monotonic()
        self._step = value

    def time_steps(self, since: float) -> None:
        """Report each step's duration from now on; the current one started at ``since``."""
        self._step_started = since

    def finish_steps(self) -> None:
        """Report the current step's duration and stop timing (the flow ends)."""
        self._finish_step()
        self._step_started = None

    def _finish_step(self) -> None:
        if self._step_started is not None:
            self.observer.step_finished(self._step, time.monotonic() - self._step_started)

    def _count(self, exc: BaseException) -> None:
        self.observer.ssh_error(ssherrors.error_kind(exc))

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
        self.observer.ssh_error(ssherrors.ErrorKind.CONNECTION_DROPPED)
        log.info(
            "host %s: connection dropped during %s (step %s); reconnecting",
            self.address,
            what,
            self.step,
        )
        try:
            await self.host.reconnect(within=self._reconnect_within)
        except sshfailures.HostKeyMismatchError as exc:
            self._count(exc)
            raise HostKeyChangedError(self.address, self.step, str(exc)) from None
        except sshfailures.SshError as exc:
            self._count(exc)
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
            except sshfailures.CommandTimeoutError as exc:
                self._count(exc)
                raise self.fail(str(exc)) from None
            except (sshfailures.HostKeyMismatchError, sshfailures.AuthenticationError) as exc:
                raise self._refused(exc) from None
            except sshfailures.SshError:
                result = ssh.Result(exit_status=None, stdout="", stderr="")
            if result.exit_status is not None:
                return result
            await self.redial(what)
        raise self.fail(f"the connection dropped {MAX_BLIPS + 1} times during {what}")

    def _refused(self, exc: sshfailures.SshError) -> ConfigurationError:
        self._count(exc)
        if isinstance(exc, sshfailures.HostKeyMismatchError):
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
        except sshfailures.CommandTimeoutError as exc:
            self._count(exc)
            raise self.fail(str(exc)) from None
        except (sshfailures.HostKeyMismatchError, sshfailures.AuthenticationError) as exc:
            raise self._refused(exc) from None
        except sshfailures.SshError:
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

    async def run_stages(
        self, stages: Sequence[batch.Stage], what: str, *, timeout: float | None = None
    ) -> batch.Answer:
        """Run stages as ONE script (:mod:`wmco.windows.batch`), again after a dropped connection.

        Raises:
            ConfigurationError: A stage failed (the message names it, with the exit status and
                the first line of error text), or :meth:`run` failed.
        """
        result = await self.run(batch.script(stages), timeout=timeout, what=what)
        problem = batch.failure(stages, result.exit_status, result.stdout, result.stderr)
        if problem is not None:
            raise self.fail(f"{what}: {problem}")
        return batch.read(result.stdout)

    def _checked(self, result: ssh.Result, what: str, ok: tuple[int, ...]) -> ssh.Result:
        if result.exit_status not in ok:
            lines = result.stderr.strip().splitlines() or result.stdout.strip().splitlines()
            detail = lines[-1:] or ["no error text"]
            raise self.fail(
                f"{what} failed with exit status {result.exit_status}: {detail[0][:300]}"
            )
        return result

    async def _upload(self, upload: Callable[[], Awaitable[None]], size: int, what: str) -> None:
        for _ in range(MAX_BLIPS + 1):
            if not self.host.connected:
                await self.redial(what)
            try:
                async with self.slot.uploading(sftp.upload_window(size)):
                    await upload()
                return
            except (sshfailures.HostKeyMismatchError, sshfailures.AuthenticationError) as exc:
                raise self._refused(exc) from None
            except sshfailures.SshError as exc:
                if self.host.connected:
                    self._count(exc)
                    raise self.fail(str(exc)) from None
            await self.redial(what)
        raise self.fail(f"the connection dropped {MAX_BLIPS + 1} times during {what}")

    async def put_file(self, source: pathlib.Path, destination: str) -> None:
        """Upload a local file, again after a dropped connection.

        Raises:
            ConfigurationError: The upload failed on a live connection (e.g. the file is held by
                a running program), or the connection kept dropping.
        """
        size = (await asyncio.to_thread(source.stat)).st_size
        await self._upload(
            lambda: self.host.put_file(source, destination),
            size,
            f"upload to {destination}",
        )

    async def put_bytes(self, data: bytes, destination: str, *, what: str = "file") -> None:
        """Write bytes to a file, again after a dropped connection (see :meth:`put_file`)."""
        await self._upload(
            lambda: self.host.put_bytes(data, destination, what=what), len(data), f"write of {what}"
        )

    async def close(self) -> None:
        """Close the connection."""
        await self.host.close()


@dataclasses.dataclass(frozen=True, slots=True)
class _LoginKey:
    key: asyncssh.SSHKey = dataclasses.field(repr=False)
    pub_key_hash: str


def login_keys(inputs: Inputs, node: Node | None) -> tuple[_LoginKey, ...]:
    """The keys to offer a host, in order: the one its Node says it trusts, current, previous.

    During a key rotation (:mod:`wmco.nodeconfig.rekey`) a host may still trust a previous key:
    its Node's ``pub-key-hash`` says which; a Machine still booting from the old user data has no
    Node yet, so every key is offered. An unusable previous key is left out.

    Raises:
        sshkeys.SshKeyError: The current key cannot be used for SSH (no key material in it).
    """
    trusted = node_annotation(node, names.PUB_KEY_HASH_ANNOTATION)
    found: list[_LoginKey] = []
    for index, pem in enumerate((inputs.private_key_pem, *inputs.previous_private_keys)):
        try:
            key = sshkeys.load_ssh_key(pem)
            key_hash = userdata.pub_key_hash(userdata.load_private_key(pem))
        except (sshkeys.SshKeyError, userdata.PrivateKeyError) as exc:
            if index == 0:
                raise sshkeys.SshKeyError(str(exc)) from None
            continue
        if all(known.pub_key_hash != key_hash for known in found):
            found.append(_LoginKey(key, key_hash))
    found.sort(key=lambda login: login.pub_key_hash != trusted)
    return tuple(found)


def node_annotation(node: Node | None, name: str) -> str | None:
    """One annotation of a Node (``None`` without Node or annotation)."""
    annotations = (node.metadata.annotations if node and node.metadata else None) or {}
    return annotations.get(name)


async def connect(
    client: kube.Client,
    instance: Instance,
    inputs: Inputs,
    node: Node | None,
    *,
    within: float | None = None,
    current_key_only: bool = False,
) -> Runner:
    """Open the SSH connection to an instance, pinning or checking its host key.

    The keys are offered in the order of :func:`login_keys`, all in one authentication
    exchange (the host refuses a key at once; no grace period is spent per key); the runner's
    :attr:`Runner.pub_key_hash` says which key the host accepted.

    Args:
        client: API client (the pinned key lives in a ConfigMap or on the Node).
        instance: The instance.
        inputs: Key and settings.
        node: The instance's Node, if any (its pinned key wins).
        within: Seconds to keep trying; ``settings.ssh_boot_deadline`` when omitted (redials
            always use that deadline).
        current_key_only: Offer only the current key (proving a re-keyed host accepts it).

    Raises:
        HostKeyChangedError: The host presented another key than the pinned one.
        ConfigurationError: No connection (the message says why).
    """
    settings = inputs.settings
    pinned = await hostkeys.pinned(client, settings.namespace, instance.address, node)

    async def on_first_use(key: sshkeys.HostKey) -> None:
        await hostkeys.remember(client, settings.namespace, instance.address, key)

    observer = inputs.observer
    try:
        keys = login_keys(
            dataclasses.replace(inputs, previous_private_keys=()) if current_key_only else inputs,
            node,
        )
    except sshkeys.SshKeyError as exc:
        raise ConfigurationError(instance.address, Step.CONNECT, str(exc)) from None
    host = ssh.WindowsHost(
        instance.address,
        instance.username,
        keys[0].key,
        settings=settings,
        pinned_host_key=pinned,
        on_first_use=on_first_use,
        port=instance.ssh_port,
        fallback_keys=tuple(login.key for login in keys[1:]),
    )
    try:
        await host.connect(within=settings.ssh_boot_deadline if within is None else within)
    except sshfailures.HostKeyMismatchError as exc:
        observer.ssh_error(ssherrors.ErrorKind.HOST_KEY_MISMATCH)
        raise HostKeyChangedError(
            instance.address,
            Step.CONNECT,
            f"{exc}; if the host was really reinstalled, delete its pinned key (ConfigMap "
            f"{names.SSH_HOST_KEYS_CONFIGMAP} entry or the Node's {names.SSH_HOST_KEY_ANNOTATION} "
            "annotation)",
        ) from None
    except sshfailures.SshError as exc:
        observer.ssh_error(ssherrors.error_kind(exc))
        raise ConfigurationError(instance.address, Step.CONNECT, str(exc)) from None
    accepted = next(login for login in keys if login.key is host.key_in_use)
    if accepted.pub_key_hash != inputs.pub_key_hash:
        log.info(
            "host %s: logged in with a previous private key (pub-key-hash %s...)",
            instance.address,
            accepted.pub_key_hash[:12],
        )
    return Runner(
        host,
        instance.address,
        reconnect_within=settings.ssh_boot_deadline,
        observer=observer,
        pub_key_hash=accepted.pub_key_hash,
    )


async def reboot(
    runner: Runner,
    boot_deadline: float,
    command_timeout: float,
    *,
    before: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Restart Windows and reconnect once it answers again.

    Args:
        runner: The host.
        boot_deadline: Seconds the host may take to answer SSH again.
        command_timeout: Seconds allowed for the restart command.
        before: Awaited before the restart (a serving node is drained there).

    Raises:
        ConfigurationError: The host did not come back in time (or ``before`` failed).
    """
    if before is not None:
        await before()
    # The connection drops while Restart-Computer runs; that is the expected answer.
    with contextlib.suppress(sshfailures.SshError):
        await runner.host.run(commands.reboot(), what="reboot", timeout=command_timeout)
    await runner.host.close()
    try:
        async with runner.slot.released():  # a rebooting host holds no place (slots.py)
            await runner.host.reconnect(within=boot_deadline)
    except sshfailures.HostKeyMismatchError as exc:
        raise HostKeyChangedError(runner.address, runner.step, str(exc)) from None
    except sshfailures.SshError as exc:
        raise runner.fail(f"host did not come back after reboot: {exc}") from None
    runner.reboots += 1


def parsed(runner: Runner, parse: Callable[[str], _T], result: ssh.Result) -> _T:
    """Parse a command's stdout, turning a shape error into a :class:`ConfigurationError`."""
    try:
        return parse(result.stdout)
    except answers.CommandOutputError as exc:
        raise runner.fail(str(exc)) from None
