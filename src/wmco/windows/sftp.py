r"""The SFTP side of one SSH connection to a Windows host: uploads.

- **Paths.** :func:`sftp_path` turns ``C:\k\x`` into ``/C:/k/x``.
- **One SFTP session per connection.** :class:`Uploads` (one per
  :class:`wmco.windows.ssh.WindowsHost`, behind its ``put_file`` / ``put_bytes``) keeps it: the
  first upload opens it, later uploads (concurrent ones too) share it;
  :meth:`wmco.windows.ssh.WindowsHost.close` ends it, and a new connection (a reconnect, a drop)
  gets a new one at its first upload. The open session is one session channel on the host beyond
  the ``ssh_channels_per_host`` commands and uploads in flight (sshd allows 10 per connection).
- **Memory.** At most :data:`UPLOAD_REQUESTS` writes of :data:`UPLOAD_BLOCK` bytes of one file
  are in flight (:func:`upload_window`).
- **Cancellation.** A cancelled upload abandons its connection at once rather than wait for the
  writes in flight (:meth:`Uploads._abandon_if_cancelled`).

No error message or log line of this module contains file contents; ``what`` / the file name
says which upload failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
from collections.abc import Awaitable, Callable
from typing import Final

import asyncssh
from asyncssh.constants import FX_BAD_MESSAGE, FX_CONNECTION_LOST, FX_NO_CONNECTION

from wmco.windows import sshfailures

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


_SESSION_GONE: Final = frozenset({FX_BAD_MESSAGE, FX_NO_CONNECTION, FX_CONNECTION_LOST})
"""SFTP status codes after which the session is not used again (the others answer one request)."""


def sftp_path(windows_path: str) -> str:
    r"""Map an absolute Windows path to the SFTP form Win32-OpenSSH accepts: ``C:\k\x`` -> ``/C:/k/x``.

    Raises:
        ValueError: The path has no drive letter.
    """
    path = pathlib.PureWindowsPath(windows_path)
    if not path.drive or not path.root or len(path.drive) != 2:
        raise ValueError("SFTP destinations must be absolute Windows paths like C:\\k\\file")
    return "/" + path.as_posix()


class Uploads:
    """The uploads of one host's connection, over its one SFTP session.

    The connection itself stays with its owner (:class:`wmco.windows.ssh.WindowsHost`), which
    gives the means to reach it and calls :meth:`drop` whenever the connection closes.
    """

    def __init__(
        self,
        address: str,
        *,
        channels: asyncio.Semaphore,
        connection: Callable[[], Awaitable[asyncssh.SSHClientConnection]],
        connected: Callable[[], bool],
        abandon: Callable[[], None],
    ) -> None:
        """Prepare (but do not open) the SFTP session.

        Args:
            address: The host's address (for errors and logs).
            channels: The host's semaphore bounding the channels open at once (commands too):
                each upload holds it while it runs.
            connection: Awaited for the live connection (connecting if there is none).
            connected: Whether a connection is open right now.
            abandon: Drops the connection at once, without waiting (it must call :meth:`drop`).
        """
        self._address = address
        self._channels = channels
        self._connection = connection
        self._connected = connected
        self._abandon = abandon
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_conn: asyncssh.SSHClientConnection | None = None
        self._sftp_lock = asyncio.Lock()

    def drop(self, which: asyncssh.SFTPClient | None = None) -> None:
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
            self.drop()
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
                        self.drop(sftp)
                    if gone and reused and attempt == 1 and self._connected():
                        LOG.info("host %s: SFTP session ended; opening another one", self._address)
                        continue
                    raise sshfailures.TransferError(
                        self._address, f"{message} failed: {type(exc).__name__}"
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
            self._abandon()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise

    async def put_bytes(self, data: bytes, destination: str, *, what: str = "file") -> None:
        """Write ``data`` to ``destination`` (absolute Windows path) over SFTP.

        The parent directory must exist (``commands.make_directories``).

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
