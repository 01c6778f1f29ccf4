r"""One SSH connection to one Windows host: key auth, host-key pinning, retries, timeouts, SFTP.

:class:`WindowsHost` wraps an asyncssh client connection:

- **Connect with a deadline.** A new VM answers only after its user data has installed sshd, so
  :meth:`WindowsHost.connect` retries refused/timed-out connections until ``boot_deadline`` and
  authentication failures until ``auth_grace`` (the key may not be authorised yet), then raises
  :class:`UnreachableError` / :class:`AuthenticationError`.
- **Host-key pinning.** With a pinned key (from the Node's ``ssh-host-key`` annotation or the
  ``windows-ssh-host-keys`` ConfigMap) any other key is refused with :class:`HostKeyMismatchError`
  and never retried. Without one, the first key seen is trusted, kept for every reconnect of this
  object, and reported through ``on_first_use`` so the caller can persist it. The decision itself is
  the pure :func:`check_host_key`.
- **Commands.** :meth:`WindowsHost.run` runs one command with a timeout and returns
  :class:`Result` (exit status, stdout, stderr; CRLF turned into LF). A connection that dropped
  before the command started is re-opened and the command sent once more; a connection that drops
  while the command runs (a reboot) gives ``exit_status=None``.
- **Files.** :meth:`WindowsHost.put_file` / :meth:`WindowsHost.put_bytes` upload over SFTP;
  :func:`sftp_path` turns ``C:\k\x`` into ``/C:/k/x``. One SFTP session per connection: the
  first upload opens it, later uploads (concurrent ones too) share it; :meth:`WindowsHost.close`
  ends it, and a new connection (a reconnect, a drop) gets a new one at its first upload. The
  open session is one session channel on the host beyond the ``ssh_channels_per_host`` commands
  and uploads in flight (sshd allows 10 per connection).
- **Throughput.** AES-GCM is preferred (with the ``cryptography`` package it costs a fraction of
  ChaCha20-Poly1305 per packet, and Win32-OpenSSH offers both), compression is off (it costs CPU
  on both ends and a ``.tar.gz`` does not shrink), and the connection does not precede every
  packet with an empty ``SSH_MSG_IGNORE`` (:func:`_tune_for_bulk`); see
  ``benchmarks/sftp_throughput.py``.
- **Fairness.** A semaphore bounds the channels open at once on one host.
- **Key rotation.** ``fallback_keys`` are offered, in order, in the same authentication exchange
  when the host refuses the first key (a host that still trusts a previous key); the accepted
  one is :attr:`WindowsHost.key_in_use`.

Commands may carry secrets (a bootstrap token in a kubeconfig): no error message or log line of
this module contains a command's text or output; callers pass a short ``what`` label instead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import enum
import hashlib
import logging
import pathlib
import time
from collections.abc import Awaitable, Callable
from typing import Final

import asyncssh
from asyncssh.constants import (
    FX_BAD_MESSAGE,
    FX_CONNECTION_LOST,
    FX_NO_CONNECTION,
    MSG_IGNORE,
)
from asyncssh.packet import SSHPacket, SSHPacketLogger

from wmco import settings as settings_module

LOG: Final = logging.getLogger(__name__)

UPLOAD_BLOCK: Final = 256 * 1024 - 1024
"""Largest SFTP write of an upload: what OpenSSH's sftp-server accepts and advertises
(``SFTP_MAX_MSG_LENGTH`` 256 KiB for the whole message, headers included, less 1 KiB), and what
bounds memory: asyncssh would otherwise use any larger length a server advertises. Win32-OpenSSH
before 8.6 (Server 2019, 2022) advertises no limits (asyncssh then assumes 16 KiB) but accepts
these writes; a smaller limit a server does advertise is honoured."""
UPLOAD_REQUESTS: Final = 16
"""SFTP writes in flight per upload: at most 4 MiB of one file is held at a time, so an operator
sending the ~330 MB payload to many hosts at once does not hold whole files in memory."""


def upload_window(size: int) -> int:
    """Bytes an upload of a ``size``-byte file holds in flight at most (its share of memory)."""
    return min(size, UPLOAD_BLOCK * UPLOAD_REQUESTS)


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


_SESSION_GONE: Final = frozenset({FX_BAD_MESSAGE, FX_NO_CONNECTION, FX_CONNECTION_LOST})
"""SFTP status codes after which the session is not used again (the others answer one request)."""


# asyncssh trusts keys listed here before asking the client object; empty lists make every key
# go through validate_host_public_key, where pinning is decided.
_NO_TRUSTED_KEYS: Final[
    tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]
] = (
    [],
    [],
    [],
)


class SshError(Exception):
    """Base of the SSH layer's errors; ``address`` names the host.

    Attributes:
        address: The host's address.
    """

    def __init__(self, address: str, message: str) -> None:
        super().__init__(f"host {address}: {message}")
        self.address = address


class HostKeyMismatchError(SshError):
    """The host presented a key different from the pinned one. Never retried.

    Attributes:
        pinned: The pinned key.
        seen: The key the host presented.
    """

    def __init__(self, address: str, pinned: HostKey, seen: HostKey) -> None:
        super().__init__(
            address,
            f"SSH host key changed: pinned {pinned.key_type} {pinned.fingerprint}, host presented "
            f"{seen.key_type} {seen.fingerprint}. If the host was rebuilt on purpose, remove the "
            "pinned key (Node annotation or windows-ssh-host-keys entry) to trust the new one.",
        )
        self.pinned = pinned
        self.seen = seen


class AuthenticationError(SshError):
    """The host kept refusing the private key after the grace period."""


class UnreachableError(SshError):
    """No SSH connection could be made before the deadline."""


class CommandTimeoutError(SshError):
    """A command did not finish within its timeout."""


class TransferError(SshError):
    """An SFTP upload failed."""


class SshKeyError(ValueError):
    """The private key cannot be used for SSH. The message never contains key material."""


@dataclasses.dataclass(frozen=True, slots=True)
class HostKey:
    """An SSH host public key.

    Attributes:
        key_type: The algorithm, e.g. ``ssh-ed25519`` (annotation ``ssh-host-key-type``).
        data: The SSH wire format of the key (annotation ``ssh-host-key``, base64).
    """

    key_type: str
    data: bytes

    @property
    def b64(self) -> str:
        """Base64 of :attr:`data`, the ``ssh-host-key`` annotation value."""
        return base64.b64encode(self.data).decode("ascii")

    @property
    def fingerprint(self) -> str:
        """``SHA256:<base64>`` as OpenSSH prints it."""
        digest = base64.b64encode(hashlib.sha256(self.data).digest()).decode("ascii")
        return "SHA256:" + digest.rstrip("=")

    @classmethod
    def from_annotation(cls, b64: str, key_type: str) -> HostKey:
        """Rebuild a key from its annotations.

        Raises:
            ValueError: The value is not base64 of an SSH public key of that type.
        """
        try:
            data = base64.b64decode(b64.strip(), validate=True)
            # The wire format starts with the algorithm name as an SSH string.
            length = int.from_bytes(data[:4], "big")
            algorithm = data[4 : 4 + length].decode("ascii")
            key = asyncssh.import_public_key(f"{algorithm} {b64.strip()}")
        except (binascii.Error, ValueError, asyncssh.KeyImportError):
            raise ValueError("the pinned SSH host key is not a valid base64 public key") from None
        if key_type and key.get_algorithm() != key_type:
            raise ValueError(
                f"the pinned SSH host key is {key.get_algorithm()}, its type annotation says "
                f"{key_type}"
            )
        return cls(key_type=key.get_algorithm(), data=data)

    @classmethod
    def from_ssh_key(cls, key: asyncssh.SSHKey) -> HostKey:
        """The :class:`HostKey` of an asyncssh key."""
        return cls(key_type=key.get_algorithm(), data=bytes(key.public_data))


class HostKeyCheck(enum.StrEnum):
    """Outcome of comparing a presented host key with the pinned one."""

    FIRST_USE = "first-use"
    MATCH = "match"
    MISMATCH = "mismatch"


def check_host_key(pinned: HostKey | None, seen: HostKey) -> HostKeyCheck:
    """Decide whether to trust a presented host key (trust on first use, then pin).

    Args:
        pinned: The key on record, if any.
        seen: The key the host presented.

    Returns:
        ``FIRST_USE`` (nothing pinned: trust and report it), ``MATCH`` or ``MISMATCH``.
    """
    if pinned is None:
        return HostKeyCheck.FIRST_USE
    if pinned.data == seen.data and pinned.key_type == seen.key_type:
        return HostKeyCheck.MATCH
    return HostKeyCheck.MISMATCH


def sftp_path(windows_path: str) -> str:
    r"""Map an absolute Windows path to the SFTP form Win32-OpenSSH accepts: ``C:\k\x`` -> ``/C:/k/x``.

    Raises:
        ValueError: The path has no drive letter.
    """
    path = pathlib.PureWindowsPath(windows_path)
    if not path.drive or not path.root or len(path.drive) != 2:
        raise ValueError("SFTP destinations must be absolute Windows paths like C:\\k\\file")
    return "/" + path.as_posix()


def load_ssh_key(private_key_pem: bytes | str) -> asyncssh.SSHKey:
    """Load the private key for SSH authentication.

    Raises:
        SshKeyError: The key cannot be imported (message without key material).
    """
    try:
        return asyncssh.import_private_key(private_key_pem)
    except (asyncssh.KeyImportError, ValueError, TypeError):
        raise SshKeyError("the private key cannot be used for SSH authentication") from None


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
    pinned: HostKey | None
    fallback_keys: tuple[asyncssh.SSHKey, ...] = ()
    seen: HostKey | None = None
    check: HostKeyCheck | None = None
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
        seen = HostKey.from_ssh_key(key)
        check = check_host_key(self._state.pinned, seen)
        self._state.seen = seen
        self._state.check = check
        return check is not HostKeyCheck.MISMATCH

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()


HostKeyCallback = Callable[["HostKey"], Awaitable[None]]


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
        pinned_host_key: HostKey | None = None,
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
            private_key: From :func:`load_ssh_key`.
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
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_conn: asyncssh.SSHClientConnection | None = None
        self._sftp_lock = asyncio.Lock()

    @property
    def host_key(self) -> HostKey | None:
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

    async def connect(self, *, within: float | None = None) -> HostKey:
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

    async def _connect_with_retries(self, within: float | None) -> HostKey:
        limit = self._settings.ssh_boot_deadline if within is None else within
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            state = _HandshakeState(pinned=self._pinned, fallback_keys=self._fallback_keys)
            try:
                self._conn = await self._open(state)
            except (TimeoutError, OSError, asyncssh.Error) as exc:
                if state.check is HostKeyCheck.MISMATCH:
                    assert self._pinned is not None and state.seen is not None
                    raise HostKeyMismatchError(self.address, self._pinned, state.seen) from None
                elapsed = self._clock() - started
                if isinstance(exc, asyncssh.PermissionDenied):
                    if elapsed >= min(self._settings.ssh_auth_grace, limit):
                        which = (
                            f"each of the {1 + len(self._fallback_keys)} private keys it may trust"
                            if self._fallback_keys
                            else "the private key"
                        )
                        raise AuthenticationError(
                            self.address,
                            f"user {self.username!r} was refused with {which} for "
                            f"{elapsed:.0f}s; is its public key in administrators_authorized_keys?",
                        ) from None
                elif elapsed >= limit:
                    raise UnreachableError(
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
            first_use = state.check is HostKeyCheck.FIRST_USE
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
        conn, self._conn = self._conn, None
        self._connected = False
        self._drop_sftp()
        if conn is not None:
            conn.close()
            with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
                async with asyncio.timeout(5):
                    await conn.wait_closed()

    async def reconnect(self, *, within: float | None = None) -> HostKey:
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
                        raise UnreachableError(
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
                    raise CommandTimeoutError(
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

    def _drop_sftp(self, which: asyncssh.SFTPClient | None = None) -> None:
        """Forget the SFTP session (only if it is ``which``), ending it if its connection runs."""
        sftp = self._sftp
        if sftp is None or (which is not None and sftp is not which):
            return
        self._sftp = self._sftp_conn = None
        with contextlib.suppress(asyncssh.Error, OSError):
            sftp.exit()

    async def _sftp_session(self) -> tuple[asyncssh.SFTPClient, bool]:
        """The connection's SFTP session and whether it served an upload before.

        The first upload on a connection opens it.
        """
        conn = await self._connection()
        async with self._sftp_lock:
            if self._sftp is not None and self._sftp_conn is conn:
                return self._sftp, True
            self._drop_sftp()
            self._sftp = await conn.start_sftp_client()
            self._sftp_conn = conn
            return self._sftp, False

    @staticmethod
    def _write_len(sftp: asyncssh.SFTPClient) -> int:
        """:data:`UPLOAD_BLOCK`, or less if the server advertises a smaller write limit."""
        if sftp._handler._supports_limits and sftp.limits.max_write_len:
            return min(sftp.limits.max_write_len, UPLOAD_BLOCK)
        return UPLOAD_BLOCK

    async def _upload(
        self, send: Callable[[asyncssh.SFTPClient, int], Awaitable[object]], message: str
    ) -> None:
        """Run ``send(session, write_len)`` on the connection's SFTP session.

        A session that ended while the connection lives on (found at its next use) is replaced
        once; a failure for this one file (no such directory, the file in use) keeps the session.

        Raises:
            TransferError: The upload failed (``message`` says which).
        """
        async with self._channels:
            for attempt in (1, 2):
                sftp: asyncssh.SFTPClient | None = None
                reused = False
                try:
                    sftp, reused = await self._sftp_session()
                    await self._abandon_if_cancelled(send(sftp, self._write_len(sftp)))
                    return
                except (asyncssh.Error, OSError) as exc:
                    gone = not isinstance(exc, asyncssh.SFTPError) or exc.code in _SESSION_GONE
                    if gone:
                        self._drop_sftp(sftp)
                    if gone and reused and attempt == 1 and self.connected:
                        LOG.info("host %s: SFTP session ended; opening another one", self.address)
                        continue
                    raise TransferError(
                        self.address, f"{message} failed: {type(exc).__name__}"
                    ) from None

    async def _abandon_if_cancelled(self, upload: Awaitable[object]) -> None:
        """Await ``upload``; if the caller is cancelled, drop the connection under it at once.

        A cancelled asyncssh upload still closes its remote file, and that close waits for
        every write in flight to be answered: minutes on a slow link, during which a stopping
        operator would hang. Aborting the connection fails those waits at once; the half
        written file is overwritten by the next pass (the digests are checked before use).
        """
        task = asyncio.ensure_future(upload)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            conn, self._conn = self._conn, None
            self._connected = False
            self._drop_sftp()
            if conn is not None:
                conn.abort()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise

    async def put_bytes(self, data: bytes, destination: str, *, what: str = "file") -> None:
        """Write ``data`` to ``destination`` (absolute Windows path) over SFTP.

        The parent directory must exist (``commands.make_directory``).

        Raises:
            TransferError: The upload failed.
        """
        remote = sftp_path(destination)

        async def send(sftp: asyncssh.SFTPClient, block: int) -> None:
            async with sftp.open(
                remote, "wb", block_size=block, max_requests=UPLOAD_REQUESTS
            ) as handle:
                await handle.write(data)

        await self._upload(send, f"upload of {what} to {destination}")

    async def put_file(self, source: pathlib.Path, destination: str) -> None:
        """Upload a local file to ``destination`` (absolute Windows path) over SFTP.

        At most :data:`UPLOAD_REQUESTS` writes of :data:`UPLOAD_BLOCK` bytes are in flight.

        Raises:
            TransferError: The upload failed.
        """
        remote = sftp_path(destination)

        async def send(sftp: asyncssh.SFTPClient, block: int) -> None:
            await sftp.put(str(source), remote, block_size=block, max_requests=UPLOAD_REQUESTS)

        await self._upload(send, f"upload of {source.name} to {destination}")
