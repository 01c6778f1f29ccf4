"""One SSH connection to one Windows host: key auth, host-key pinning, retries, timeouts, commands.

:class:`WindowsHost` wraps an asyncssh client connection:

- **Connect with a deadline.** A new VM answers only after its user data has installed sshd, so
  :meth:`WindowsHost.connect` retries refused/timed-out connections until ``boot_deadline`` and
  authentication failures until ``auth_grace`` (the key may not be authorised yet), then raises
  :class:`~wmco.windows.sshfailures.UnreachableError` /
  :class:`~wmco.windows.sshfailures.AuthenticationError`.
- **Host-key pinning.** With a pinned key (from the Node's ``ssh-host-key`` annotation or the
  ``windows-ssh-host-keys`` ConfigMap) any other key is refused with
  :class:`~wmco.windows.sshfailures.HostKeyMismatchError` and never retried. Without one, the
  first key seen is trusted, kept for every reconnect of this object, and reported through
  ``on_first_use`` so the caller can persist it. The decision itself is the pure
  :func:`wmco.windows.sshkeys.check_host_key`.
- **Commands.** :meth:`WindowsHost.run` runs one command with a timeout and returns
  :class:`Result` (exit status, stdout, stderr; CRLF turned into LF). A connection that dropped
  before the command started is re-opened and the command sent once more; a connection that drops
  while the command runs (a reboot) gives ``exit_status=None``.
- **Files.** :meth:`WindowsHost.put_file` / :meth:`WindowsHost.put_bytes` upload over SFTP
  through the connection's :class:`wmco.windows.sftp.Uploads` (one SFTP session per connection;
  :meth:`WindowsHost.close` ends it).
- **Throughput.** AES-GCM is preferred (with the ``cryptography`` package it costs a fraction of
  ChaCha20-Poly1305 per packet, and Win32-OpenSSH offers both), compression is off (it costs CPU
  on both ends and a ``.tar.gz`` does not shrink), and the connection does not precede every
  packet with an empty ``SSH_MSG_IGNORE`` (:func:`_tune_for_bulk`); see
  ``benchmarks/sftp_throughput.py``.
- **Fairness.** A semaphore bounds the channels open at once on one host (commands and uploads).
- **Key rotation.** ``fallback_keys`` are offered, in order, in the same authentication exchange
  when the host refuses the first key (a host that still trusts a previous key); the accepted
  one is :attr:`WindowsHost.key_in_use`.

The rest of the SSH layer: :mod:`wmco.windows.sshkeys` (the :class:`~wmco.windows.sshkeys.HostKey`
pinned, the private key loaded), :mod:`wmco.windows.sftp` (uploads: paths, the session, memory
bounds), :mod:`wmco.windows.sshfailures` (the errors) and :mod:`wmco.windows.ssherrors` (their
kinds for the metric).

Commands may carry secrets (a bootstrap token in a kubeconfig): no error message or log line of
this module contains a command's text or output; callers pass a short ``what`` label instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import logging
import os
import pathlib
import time
from collections.abc import Awaitable, Callable
from typing import Final

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import SSHPacket, SSHPacketLogger

from wmco import settings as settings_module
from wmco.windows import sftp, sshfailures, sshkeys

LOG: Final = logging.getLogger(__name__)

ENCRYPTION_ALGS: Final = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
"""Ciphers offered, in order. asyncssh's own order puts ChaCha20-Poly1305 first, which it builds
from three ``cryptography`` calls per packet; AES-GCM is one (AES-NI), and uploads ran about
twice as fast with it (``benchmarks/sftp_throughput.py``). No CBC mode is offered (see
:func:`_tune_for_bulk`)."""


LOCAL_USER_VARIABLES: Final = ("LOGNAME", "USER", "LNAME", "USERNAME")
"""Where :func:`getpass.getuser` looks, in order, before the password database."""
FALLBACK_LOCAL_USER: Final = "wmco"
"""The local user name asyncssh is given when the process's user id has no name."""


def ensure_local_username() -> str:
    """Make :func:`getpass.getuser` answer, and answer at once; return what it answers.

    asyncssh asks for the local user name whenever it builds a connection's options, although
    the operator always names the remote user. Without ``LOGNAME``/``USER`` in the environment
    (a container's usual case) every call reads the password database, which took 10 % of the
    operator's CPU while 500 hosts joined. A user id the database does not know, which is how
    OpenShift runs pods ("the image runs as any user id"), makes it raise, and asyncssh then
    refuses every connection ("Unknown local username"). So the name is looked up once and put
    in ``LOGNAME``; an unknown id gets :data:`FALLBACK_LOCAL_USER`.
    """
    if not any(os.environ.get(name) for name in LOCAL_USER_VARIABLES):
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = FALLBACK_LOCAL_USER
        os.environ["LOGNAME"] = name
    return getpass.getuser()


def _process_full_exit_status(self: asyncssh.SSHClientChannel[bytes], packet: SSHPacket) -> bool:
    """The exit-status handler of asyncssh, minus its POSIX ``& 0xff``.

    asyncssh masks the exit status to 8 bits, as a POSIX shell would. Windows sends the full
    32-bit exit code (``sc.exe qc nosuch`` exits with 1060, which the mask turns into 36), and the
    operator decides on those codes, so the client channel keeps all 32 bits.
    """
    status = packet.get_uint32()
    packet.check_end()
    if self._exit_status is not None or self._exit_signal is not None:
        raise asyncssh.ProtocolError("Multiple exit results not allowed")
    self.logger.info("Received exit status %d", status)
    self._exit_status = status
    self._session.exit_status_received(status)
    return True


asyncssh.SSHClientChannel._process_exit_status_request = _process_full_exit_status  # type: ignore[method-assign,assignment]


def _tune_for_bulk(conn: asyncssh.SSHClientConnection) -> None:
    """Stop asyncssh sending an empty ``SSH_MSG_IGNORE`` before every packet of ``conn``.

    After the key exchange asyncssh precedes each packet with one: RFC 4251 §9.3.1's
    countermeasure against the chosen-plaintext attack on CBC mode. None of
    :data:`ENCRYPTION_ALGS` is CBC, so it protects nothing here; OpenSSH does not send it; and it
    doubles the packets of an upload (each one padded, encrypted, sent, and decrypted by the
    host). Only this connection is changed.
    """
    send = conn.send_packet

    def send_packet(pkttype: int, *args: bytes, handler: SSHPacketLogger | None = None) -> None:
        if pkttype != MSG_IGNORE:
            send(pkttype, *args, handler=handler)

    conn.send_packet = send_packet  # type: ignore[method-assign]


# asyncssh trusts keys listed here before asking the client object; empty lists make every key
# go through validate_host_public_key, where pinning is decided.
_NO_TRUSTED_KEYS: Final[
    tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]
] = (
    [],
    [],
    [],
)


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one command.

    Attributes:
        exit_status: The remote exit status (Win32 codes arrive unmodified); ``None`` when the
            connection dropped before one was sent (e.g. ``Restart-Computer``).
        stdout: Standard output, decoded, LF line endings.
        stderr: Standard error, decoded, LF line endings.
    """

    exit_status: int | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether the command exited with status 0."""
        return self.exit_status == 0


def decode_output(data: bytes | str | None) -> str:
    """Decode Windows console output: UTF-8 if valid, else the OEM code page 437; CRLF -> LF."""
    if data is None:
        return ""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp437")
    else:
        text = data
    return text.replace("\r\n", "\n")


@dataclasses.dataclass(slots=True)
class _HandshakeState:
    pinned: sshkeys.HostKey | None
    fallback_keys: tuple[asyncssh.SSHKey, ...] = ()
    seen: sshkeys.HostKey | None = None
    check: sshkeys.HostKeyCheck | None = None
    key_index: int = 0


class _PinningClient(asyncssh.SSHClient):
    """asyncssh client callbacks: decide host keys, offer fallback keys, notice drops."""

    def __init__(self, state: _HandshakeState, on_lost: Callable[[], None]) -> None:
        self._state = state
        self._on_lost = on_lost

    def public_key_auth_requested(self) -> asyncssh.SSHKey | None:
        # asyncssh offers the first key itself (client_keys); each call here is asked once the
        # previous key was refused, so the index says which key the server accepted.
        state = self._state
        if state.key_index >= len(state.fallback_keys):
            return None
        key = state.fallback_keys[state.key_index]
        state.key_index += 1
        return key

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        seen = sshkeys.HostKey.from_ssh_key(key)
        check = sshkeys.check_host_key(self._state.pinned, seen)
        self._state.seen = seen
        self._state.check = check
        return check is not sshkeys.HostKeyCheck.MISMATCH

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()


HostKeyCallback = Callable[[sshkeys.HostKey], Awaitable[None]]


class WindowsHost:
    """An SSH connection to one Windows host, re-opened as needed.

    Use as ``async with WindowsHost(...) as host:`` or call :meth:`connect` / :meth:`close`.
    """

    def __init__(
        self,
        address: str,
        username: str,
        private_key: asyncssh.SSHKey,
        *,
        settings: settings_module.Settings | None = None,
        pinned_host_key: sshkeys.HostKey | None = None,
        on_first_use: HostKeyCallback | None = None,
        port: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        fallback_keys: tuple[asyncssh.SSHKey, ...] = (),
    ) -> None:
        """Prepare (but do not open) the connection.

        Args:
            address: IP address or DNS name.
            username: SSH user.
            private_key: From :func:`wmco.windows.sshkeys.load_ssh_key`.
            settings: Timeouts, port and channel limit; defaults when omitted.
            pinned_host_key: The key on record; ``None`` trusts the first key seen.
            on_first_use: Awaited with the key when it was trusted on first use (persist it).
            port: Overrides ``settings.ssh_port``.
            clock: Monotonic clock (tests inject a fake one).
            sleep: Sleep function (tests inject a fake one).
            fallback_keys: Keys offered, in order, when the host refuses ``private_key`` in
                the same authentication exchange (a key rotation: keys the host may still
                trust); :attr:`key_in_use` says which one was accepted.
        """
        config = settings or settings_module.Settings()
        ensure_local_username()
        self.address = address
        self.username = username
        self.port = port if port is not None else config.ssh_port
        self._key = private_key
        self._fallback_keys = fallback_keys
        self._key_in_use = private_key
        self._settings = config
        self._pinned = pinned_host_key
        self._on_first_use = on_first_use
        self._clock = clock
        self._sleep = sleep
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connected = False
        self._connect_lock = asyncio.Lock()
        self._channels = asyncio.Semaphore(config.ssh_channels_per_host)
        self._uploads = sftp.Uploads(
            address,
            channels=self._channels,
            connection=self._connection,
            connected=lambda: self.connected,
            abandon=self._abandon,
        )

    @property
    def host_key(self) -> sshkeys.HostKey | None:
        """The pinned key (given, or trusted on first use); ``None`` before the first connect."""
        return self._pinned

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._conn is not None and self._connected

    @property
    def key_in_use(self) -> asyncssh.SSHKey:
        """The private key the host accepted at the last connect (the first one before)."""
        return self._key_in_use

    async def __aenter__(self) -> WindowsHost:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self, *, within: float | None = None) -> sshkeys.HostKey:
        """Open the connection, retrying while the host boots.

        Args:
            within: Seconds to keep trying unreachable hosts; ``settings.ssh_boot_deadline``
                when omitted. Authentication failures are retried for ``settings.ssh_auth_grace``.

        Returns:
            The host key in use.

        Raises:
            HostKeyMismatchError: The host presented another key than the pinned one.
            AuthenticationError: The key was refused for longer than the grace period.
            UnreachableError: No connection before the deadline.
        """
        async with self._connect_lock:
            if self.connected:
                assert self._pinned is not None
                return self._pinned
            return await self._connect_with_retries(within)

    async def _connect_with_retries(self, within: float | None) -> sshkeys.HostKey:
        limit = self._settings.ssh_boot_deadline if within is None else within
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            state = _HandshakeState(pinned=self._pinned, fallback_keys=self._fallback_keys)
            try:
                self._conn = await self._open(state)
            except (TimeoutError, OSError, asyncssh.Error) as exc:
                if state.check is sshkeys.HostKeyCheck.MISMATCH:
                    assert self._pinned is not None and state.seen is not None
                    raise sshfailures.HostKeyMismatchError(
                        self.address, self._pinned, state.seen
                    ) from None
                elapsed = self._clock() - started
                if isinstance(exc, asyncssh.PermissionDenied):
                    if elapsed >= min(self._settings.ssh_auth_grace, limit):
                        which = (
                            f"each of the {1 + len(self._fallback_keys)} private keys it may trust"
                            if self._fallback_keys
                            else "the private key"
                        )
                        raise sshfailures.AuthenticationError(
                            self.address,
                            f"user {self.username!r} was refused with {which} for "
                            f"{elapsed:.0f}s; is its public key in administrators_authorized_keys?",
                        ) from None
                elif elapsed >= limit:
                    raise sshfailures.UnreachableError(
                        self.address,
                        f"no SSH connection on port {self.port} after {elapsed:.0f}s "
                        f"({attempt} attempts; last error: {type(exc).__name__})",
                    ) from None
                LOG.debug(
                    "host %s: SSH attempt %d failed (%s); retrying",
                    self.address,
                    attempt,
                    type(exc).__name__,
                )
                remaining = limit - elapsed
                await self._sleep(max(0.0, min(self._settings.ssh_retry_interval, remaining)))
                continue
            self._connected = True
            self._key_in_use = (
                self._fallback_keys[state.key_index - 1] if state.key_index else self._key
            )
            assert state.seen is not None
            first_use = state.check is sshkeys.HostKeyCheck.FIRST_USE
            self._pinned = state.seen
            if first_use:
                LOG.info(
                    "host %s: trusting SSH host key %s %s on first use",
                    self.address,
                    state.seen.key_type,
                    state.seen.fingerprint,
                )
                if self._on_first_use is not None:
                    try:
                        await self._on_first_use(state.seen)
                    except BaseException:
                        # Not persisted: forget it, so the next connect reports it again.
                        await self.close()
                        self._pinned = None
                        raise
            return state.seen

    async def _open(self, state: _HandshakeState) -> asyncssh.SSHClientConnection:
        def mark_lost() -> None:
            self._connected = False

        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that
        # arrives as the connection completes, and a cancelled operator would then never stop.
        async with asyncio.timeout(self._settings.ssh_connect_timeout):
            conn, _ = await asyncssh.create_connection(
                lambda: _PinningClient(state, mark_lost),
                self.address,
                self.port,
                username=self.username,
                client_keys=[self._key],
                known_hosts=_NO_TRUSTED_KEYS,
                agent_path=None,
                config=None,
                preferred_auth="publickey",
                password=None,
                keepalive_interval=15,
                encryption_algs=list(ENCRYPTION_ALGS),
                compression_algs=["none"],
            )
        _tune_for_bulk(conn)
        return conn

    async def close(self) -> None:
        """Close the connection (the pinned key is kept for a later :meth:`connect`)."""
        conn = self._detach()
        if conn is not None:
            conn.close()
            with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
                async with asyncio.timeout(5):
                    await conn.wait_closed()

    async def reconnect(self, *, within: float | None = None) -> sshkeys.HostKey:
        """Close and connect again (after a reboot or a network reset)."""
        await self.close()
        return await self.connect(within=within)

    async def _connection(self) -> asyncssh.SSHClientConnection:
        if not self.connected:
            await self.connect()
        assert self._conn is not None
        return self._conn

    async def run(
        self, command: str, *, timeout: float | None = None, what: str = "command"
    ) -> Result:
        """Run one command.

        Args:
            command: The command string (from :mod:`wmco.windows.commands`).
            timeout: Seconds; ``settings.ssh_command_timeout`` when omitted.
            what: Short label for errors and logs (the command text itself is never logged).

        Returns:
            The result; ``exit_status`` is ``None`` if the connection dropped mid-command.

        Raises:
            CommandTimeoutError: The command did not finish in time.
            UnreachableError, AuthenticationError, HostKeyMismatchError: Reconnecting failed.
        """
        limit = self._settings.ssh_command_timeout if timeout is None else timeout
        async with self._channels:
            for attempt in (1, 2):
                conn = await self._connection()
                try:
                    process = await conn.create_process(command, encoding=None)
                except (asyncssh.ChannelOpenError, asyncssh.DisconnectError, OSError) as exc:
                    # The command never started: safe to reconnect and send it once more.
                    self._connected = False
                    if attempt == 2:
                        raise sshfailures.UnreachableError(
                            self.address, f"cannot open a channel for {what}: {type(exc).__name__}"
                        ) from None
                    LOG.info("host %s: connection lost before %s; reconnecting", self.address, what)
                    await self.close()
                    continue
                try:
                    # Our own asyncio.timeout, not asyncssh's (asyncssh 2.x wraps the wait in
                    # asyncio.wait_for, which on Python 3.11 swallows a cancellation that
                    # arrives as the command completes: the worker then never stops).
                    async with asyncio.timeout(limit):
                        completed = await process.wait(check=False)
                except TimeoutError:
                    process.close()
                    raise sshfailures.CommandTimeoutError(
                        self.address, f"{what} did not finish within {limit:.0f}s"
                    ) from None
                except (asyncssh.DisconnectError, OSError):
                    self._connected = False
                    return Result(exit_status=None, stdout="", stderr="")
                if completed.exit_status is None:
                    self._connected = self._conn is not None and not self._conn.is_closed()
                return Result(
                    exit_status=completed.exit_status,
                    stdout=decode_output(completed.stdout),
                    stderr=decode_output(completed.stderr),
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def _abandon(self) -> None:
        """Drop the connection at once, without waiting (an upload was cancelled).

        See :meth:`wmco.windows.sftp.Uploads._abandon_if_cancelled`.
        """
        conn = self._detach()
        if conn is not None:
            conn.abort()

    def _detach(self) -> asyncssh.SSHClientConnection | None:
        """Forget the connection and its SFTP session; answer the connection to end."""
        conn, self._conn = self._conn, None
        self._connected = False
        self._uploads.drop()
        return conn

    async def put_bytes(self, data: bytes, destination: str, *, what: str = "file") -> None:
        """Write ``data`` to ``destination`` (absolute Windows path) over SFTP.

        The parent directory must exist (``commands.make_directories``).

        Raises:
            TransferError: The upload failed.
        """
        await self._uploads.put_bytes(data, destination, what=what)

    async def put_file(self, source: pathlib.Path, destination: str) -> None:
        """Upload a local file to ``destination`` (absolute Windows path) over SFTP.

        At most :data:`wmco.windows.sftp.UPLOAD_REQUESTS` writes of
        :data:`wmco.windows.sftp.UPLOAD_BLOCK` bytes are in flight.

        Raises:
            TransferError: The upload failed.
        """
        await self._uploads.put_file(source, destination)
