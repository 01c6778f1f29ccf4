"""Copy files to a Windows host only when the host's copy differs (by SHA-256).

For each file, the host is asked for ``Get-FileHash`` of the destination (``commands.file_hash``);
a matching digest means the file is already there and nothing is sent. Otherwise the destination
directory is created, the file uploaded over SFTP, and the digest checked again, so a truncated
upload is caught here and not by a service that fails to start later.

The host is anything with ``run`` and ``put_file`` (:class:`wmco.windows.ssh.WindowsHost`, or a
fake in tests); items are anything with ``source``, ``destination`` and ``sha256`` (e.g.
``wmco.payload.manifest.PayloadFile``, which this layer does not import).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Protocol

from wmco.windows import commands, ssh


class RemoteHost(Protocol):
    """What transfer needs from a host connection."""

    address: str

    async def run(
        self, command: str, *, timeout: float | None = None, what: str = "command"
    ) -> ssh.Result:
        """Run one command."""
        ...

    async def put_file(self, source: pathlib.Path, destination: str) -> None:
        """Upload one file."""
        ...


class TransferItem(Protocol):
    """One file to place on the host."""

    @property
    def source(self) -> pathlib.Path:
        """Local path."""
        ...

    @property
    def destination(self) -> str:
        """Absolute Windows path."""
        ...

    @property
    def sha256(self) -> str:
        """Lower-case hex digest of the local file."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class FileToSend:
    """A plain :class:`TransferItem`."""

    source: pathlib.Path
    destination: str
    sha256: str


@dataclasses.dataclass(frozen=True, slots=True)
class TransferReport:
    """What :func:`ensure_files` did: destinations copied and destinations already up to date."""

    copied: tuple[str, ...]
    skipped: tuple[str, ...]


class TransferVerificationError(ssh.SshError):
    """After an upload, the host's digest still differs from the expected one."""


def parent_directory(windows_path: str) -> str:
    r"""The directory part of an absolute Windows path (``C:\k\x.exe`` -> ``C:\k``)."""
    return str(pathlib.PureWindowsPath(windows_path).parent)


async def remote_sha256(host: RemoteHost, destination: str) -> str | None:
    """The lower-case SHA-256 of a file on the host, or ``None`` if it is absent.

    Raises:
        commands.CommandOutputError: The host answered something that is not a digest.
    """
    result = await host.run(commands.file_hash(destination), what=f"hash of {destination}")
    if not result.ok:
        return None
    return commands.parse_file_hash(result.stdout)


async def ensure_file(host: RemoteHost, item: TransferItem) -> bool:
    """Place one file on the host unless an identical copy is already there.

    Returns:
        ``True`` if the file was uploaded, ``False`` if it was already up to date.

    Raises:
        TransferVerificationError: The digest differs after the upload.
        ssh.SshError: The connection failed.
    """
    expected = item.sha256.lower()
    if await remote_sha256(host, item.destination) == expected:
        return False
    directory = parent_directory(item.destination)
    made = await host.run(commands.make_directory(directory), what=f"mkdir {directory}")
    if not made.ok:
        raise ssh.TransferError(host.address, f"cannot create directory {directory}")
    await host.put_file(item.source, item.destination)
    actual = await remote_sha256(host, item.destination)
    if actual != expected:
        raise TransferVerificationError(
            host.address,
            f"{item.destination} has sha256 {actual} after upload, expected {expected}",
        )
    return True


async def ensure_files(host: RemoteHost, items: Sequence[TransferItem]) -> TransferReport:
    """Place every file (in order) on the host, copying only those that differ.

    Raises:
        TransferVerificationError: A digest differs after an upload.
        ssh.SshError: The connection failed.
    """
    copied: list[str] = []
    skipped: list[str] = []
    for item in items:
        if await ensure_file(host, item):
            copied.append(item.destination)
        else:
            skipped.append(item.destination)
    return TransferReport(copied=tuple(copied), skipped=tuple(skipped))
