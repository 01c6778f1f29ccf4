r"""The SFTP subsystem, as Win32-OpenSSH's ``sftp-server.exe`` serves it, on the virtual disk.

Windows paths in all three spellings (``/C:/k/x``, ``C:/k/x``, ``C:\\k\\x``); ``realpath``
answers ``/C:/...`` with forward slashes and the on-disk case; relative paths start at the user
profile. Errors map to SFTP status codes a v3 client sees (a full disk is SSH_FX_FAILURE; a
file a running service holds, opened for writing, removed or renamed, is
SSH_FX_PERMISSION_DENIED). The bandwidth cap and "drop after N bytes" faults apply here.

Message length: sftp-server reads messages of at most ``SFTP_MAX_MSG_LENGTH`` (256 KiB, headers
included) and exits on a longer one ("bad message"), which ends the session; a write carrying
more than :data:`MAX_WRITE_DATA` bytes does the same here. Its ``limits@openssh.com`` answer is
sftp-server's (256 KiB messages, reads and writes of 255 KiB), not asyncssh's 4 MiB.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncssh
from asyncssh import SFTPAttrs, SFTPLimits, SFTPName
from asyncssh.packet import SSHPacket
from asyncssh.sftp import SFTPServerHandler

from wmco_sandbox.winhost.core.disk import DirNode, DiskError, FileNode, FileWriter
from wmco_sandbox.winhost.ssh.endpoint import SshEndpoint

__all__ = ["WinSFTPServer"]

_READ, _WRITE, _APPEND, _CREAT, _TRUNC, _EXCL = 1, 2, 4, 8, 0x10, 0x20

SFTP_MAX_MSG_LENGTH = 256 * 1024
"""OpenSSH's ``sftp.h``: the longest message sftp-server reads (its length field not counted)."""
MAX_WRITE_DATA = SFTP_MAX_MSG_LENGTH - (1 + 4 + 4 + 4 + 8 + 4)
"""The most data one SSH_FXP_WRITE can carry: the type, the request id, a 4-byte handle (as a
string), the offset and the data's own length field take the rest."""
SFTP_IO_LENGTH = SFTP_MAX_MSG_LENGTH - 1024
"""The read and write length sftp-server advertises in its ``limits@openssh.com`` answer."""


class _Handle:
    def __init__(self, path: str, node: FileNode, writer: FileWriter | None, append: bool) -> None:
        self.path = path
        self.node = node
        self.writer = writer
        self.append = append


def _attrs(node: FileNode | DirNode) -> SFTPAttrs:
    mtime = int(node.mtime)
    if isinstance(node, DirNode):
        return SFTPAttrs(
            type=2, size=0, uid=0, gid=0, permissions=0o40777, atime=mtime, mtime=mtime
        )
    return SFTPAttrs(
        type=1, size=node.size, uid=0, gid=0, permissions=0o100666, atime=mtime, mtime=mtime
    )


def _sftp_error(exc: DiskError) -> asyncssh.SFTPError:
    if exc.kind in ("notfound", "pathnotfound"):
        return asyncssh.SFTPNoSuchFile("No such file")
    if exc.kind == "full":
        return asyncssh.SFTPFailure("There is not enough space on the disk.")
    if exc.kind == "exists":
        return asyncssh.SFTPFailure("File exists")
    if exc.kind == "inuse":
        # A running program's image: CreateFile/DeleteFile/MoveFile fail, errno EACCES.
        return asyncssh.SFTPPermissionDenied("Permission denied")
    return asyncssh.SFTPFailure("Failure")


class WinSFTPServer(asyncssh.SFTPServer):
    """SFTP server backed by a host's virtual disk.

    Args:
        chan: The SSH channel (asyncssh passes it).
        host: The host whose disk is served.
    """

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], host: SshEndpoint) -> None:
        super().__init__(chan)
        self._host = host
        self._disk = host.machine.disk
        host.traffic.sftp_sessions += 1
        user = chan.get_extra_info("username") or "Administrator"
        self._cwd = f"C:\\Users\\{user}"

    def _path(self, path: bytes) -> str:
        text = path.decode("utf-8", "replace")
        return text if text not in ("", ".") else self._cwd

    def _lookup(self, path: bytes) -> FileNode | DirNode:
        try:
            node = self._disk.lookup(self._disk.parse(self._path(path), self._cwd))
        except DiskError as exc:
            raise _sftp_error(exc) from None
        if node is None:
            raise asyncssh.SFTPNoSuchFile("No such file")
        return node

    async def _throttle(self, count: int) -> None:
        faults = self._host.faults
        rates = [r for r in (faults.sftp_bandwidth, self._host.machine.profile.transfer_rate) if r]
        if rates:
            await asyncio.sleep(count / min(rates))
        if faults.drop_after_bytes is not None and self._host.count_bytes(self.connection, count):
            self.connection.abort()
            raise asyncssh.SFTPConnectionLost("Connection dropped")

    def realpath(self, path: bytes) -> bytes:
        """``/C:/...`` with forward slashes and the on-disk case."""
        try:
            parts = self._disk.parse(self._path(path), self._cwd)
        except DiskError as exc:
            raise _sftp_error(exc) from None
        return ("/C:/" + "/".join(self._disk.canonical(parts))).encode()

    def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> _Handle:
        """Open for read and/or write (create/truncate/exclusive flags honoured)."""
        win = self._path(path)
        try:
            if pflags & (_WRITE | _APPEND):
                writer = self._disk.open_writer(
                    win, truncate=bool(pflags & _TRUNC), create=bool(pflags & _CREAT),
                    exclusive=bool(pflags & _EXCL),
                )  # fmt: skip
                return _Handle(win, writer.node, writer, bool(pflags & _APPEND))
            node = self._disk.lookup(self._disk.parse(win, self._cwd))
        except DiskError as exc:
            raise _sftp_error(exc) from None
        if node is None:
            raise asyncssh.SFTPNoSuchFile("No such file")
        if isinstance(node, DirNode):
            raise asyncssh.SFTPFailure("Is a directory")
        return _Handle(win, node, None, False)

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        """Read bytes (sunk files cannot be read back)."""
        assert isinstance(file_obj, _Handle)
        if file_obj.node.data is None:
            raise asyncssh.SFTPFailure("File content not kept (sink mode)")
        data = bytes(file_obj.node.data[offset : offset + size])
        await self._throttle(len(data))
        return data

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        """Write bytes at an offset (or at the end in append mode)."""
        assert isinstance(file_obj, _Handle)
        if len(data) > MAX_WRITE_DATA:
            # sftp-server: "bad message", exit 11; sshd closes the session, no status is sent.
            self.channel.close()
            raise asyncssh.SFTPConnectionLost("Bad message")
        if file_obj.writer is None:
            raise asyncssh.SFTPPermissionDenied("File not open for writing")
        self._host.traffic.sftp_bytes_written += len(data)
        await self._throttle(len(data))
        if file_obj.append:
            offset = file_obj.node.size
        try:
            file_obj.writer.write(offset, data)
        except DiskError as exc:
            raise _sftp_error(exc) from None
        return len(data)

    def close(self, file_obj: object) -> None:
        """Close a handle (fixes the digest of sunk files)."""
        assert isinstance(file_obj, _Handle)
        if file_obj.writer is not None:
            file_obj.writer.close()

    def stat(self, path: bytes) -> SFTPAttrs:
        """Attributes of a path."""
        return _attrs(self._lookup(path))

    def lstat(self, path: bytes) -> SFTPAttrs:
        """Attributes of a path (no links on this disk)."""
        return _attrs(self._lookup(path))

    def fstat(self, file_obj: object) -> SFTPAttrs:
        """Attributes of an open file."""
        assert isinstance(file_obj, _Handle)
        return _attrs(file_obj.node)

    def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        """Accepted and ignored (Windows maps few POSIX attributes)."""
        self._lookup(path)

    def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        """Accepted and ignored."""

    async def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        """Directory listing with ``.`` and ``..``."""
        node = self._lookup(path)
        if not isinstance(node, DirNode):
            raise asyncssh.SFTPNoSuchFile("Not a directory")
        now = int(time.time())
        for dot in (b".", b".."):
            yield SFTPName(dot, attrs=SFTPAttrs(type=2, permissions=0o40777, mtime=now))
        for shown, child in list(node.children.values()):
            yield SFTPName(shown.encode(), attrs=_attrs(child))

    def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        """Create one directory (parent must exist; an existing name fails)."""
        win = self._path(path)
        try:
            parts = self._disk.parse(win, self._cwd)
            if self._disk.lookup(parts) is not None:
                raise asyncssh.SFTPFailure("File exists")
            self._disk.parent_dir(parts, win)
            self._disk.mkdir(win, parents=False, exist_ok=False)
        except DiskError as exc:
            raise _sftp_error(exc) from None

    def rmdir(self, path: bytes) -> None:
        """Remove an empty directory."""
        if not isinstance(self._lookup(path), DirNode):
            raise asyncssh.SFTPFailure("Not a directory")
        try:
            self._disk.remove(self._path(path))
        except DiskError as exc:
            raise _sftp_error(exc) from None

    def remove(self, path: bytes) -> None:
        """Remove a file."""
        if not isinstance(self._lookup(path), FileNode):
            raise asyncssh.SFTPFailure("Is a directory")
        try:
            self._disk.remove(self._path(path))
        except DiskError as exc:
            raise _sftp_error(exc) from None

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        """Rename (fails if the target exists, as on Windows)."""
        try:
            self._disk.rename(self._path(oldpath), self._path(newpath))
        except DiskError as exc:
            raise _sftp_error(exc) from None

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        """Not offered by Windows sftp-server."""
        raise asyncssh.SFTPOpUnsupported("Operation unsupported")

    def readlink(self, path: bytes) -> bytes:
        """No links."""
        raise asyncssh.SFTPOpUnsupported("Operation unsupported")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        """No links."""
        raise asyncssh.SFTPOpUnsupported("Operation unsupported")


_handler = SFTPServerHandler._packet_handlers[b"limits@openssh.com"]
assert _handler is not None
_asyncssh_limits = _handler


async def _process_limits(handler: SFTPServerHandler, packet: SSHPacket) -> object:
    """sftp-server's ``limits@openssh.com`` answer for the simulated host, asyncssh's otherwise."""
    if not isinstance(handler._server, WinSFTPServer):
        return await _asyncssh_limits(handler, packet)
    packet.check_end()
    # No handle limit (0), as sftp-server answers when getrlimit gives it none.
    return SFTPLimits(SFTP_MAX_MSG_LENGTH, SFTP_IO_LENGTH, SFTP_IO_LENGTH, 0)


# asyncssh answers limits@openssh.com itself, from its own 4 MiB constants; only the handler
# table can change the answer (the guard above leaves other asyncssh servers as they were).
SFTPServerHandler._packet_handlers = {
    **SFTPServerHandler._packet_handlers,
    b"limits@openssh.com": _process_limits,
}
