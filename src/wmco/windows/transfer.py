"""Files on a Windows host, compared and written by SHA-256.

The flow first asks which files differ (:func:`differing`: ``Get-FileHash`` of each destination,
``commands.file_hash``) and only then, once the services that hold them are stopped, writes them
(:func:`send`: parent directory, SFTP upload, digest checked again, so a truncated upload is caught
here and not by a service that fails to start later). Splitting the two is what lets the operator
stop exactly the services whose files change, and nothing else (contract §5).

A file is a :class:`Content`: a destination, the digest it must have, and either a local file (the
payload) or bytes (what the operator generates). The host is anything with ``run``, ``put_file``
and ``put_bytes`` (:class:`wmco.windows.ssh.WindowsHost`, the configure flow's reconnecting
runner, or a fake in tests).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from collections.abc import Sequence
from typing import Protocol

from wmco.windows import answers, commands, ssh


class RemoteHost(Protocol):
    """What transfer needs from a host connection."""

    address: str

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


class TransferItem(Protocol):
    """One local file to place on the host (e.g. ``wmco.payload.manifest.PayloadFile``)."""

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
class Content:
    """What one file on the host must contain.

    Attributes:
        destination: Absolute Windows path.
        sha256: Lower-case hex digest of the content.
        source: Local file with the content (payload files).
        data: The content itself (generated files); never shown in ``repr``, it may hold a token.
        what: A label for logs and errors (the content is never logged).
    """

    destination: str
    sha256: str
    source: pathlib.Path | None = None
    data: bytes | None = dataclasses.field(default=None, repr=False)
    what: str = "file"

    @classmethod
    def of_bytes(cls, destination: str, data: bytes, what: str) -> Content:
        """Generated content."""
        return cls(destination, hashlib.sha256(data).hexdigest(), data=data, what=what)

    @classmethod
    def of_file(cls, item: TransferItem) -> Content:
        """A local file whose digest is already known (a payload manifest entry)."""
        return cls(item.destination, item.sha256.lower(), source=item.source, what=item.source.name)


class TransferVerificationError(ssh.SshError):
    """After an upload, the host's digest still differs from the expected one."""


def parent_directory(windows_path: str) -> str:
    r"""The directory part of an absolute Windows path (``C:\k\x.exe`` -> ``C:\k``)."""
    return str(pathlib.PureWindowsPath(windows_path).parent)


async def remote_sha256(host: RemoteHost, destination: str) -> str | None:
    """The lower-case SHA-256 of a file on the host, or ``None`` if it is absent.

    Raises:
        ssh.TransferError: The connection dropped before an answer came (not the same as absent).
        answers.CommandOutputError: The host answered something that is not a digest.
    """
    result = await host.run(commands.file_hash(destination), what=f"hash of {destination}")
    if result.exit_status is None:
        raise ssh.TransferError(host.address, f"no answer to the hash of {destination}")
    if not result.ok:
        return None
    return answers.parse_file_hash(result.stdout)


async def differing(host: RemoteHost, items: Sequence[Content]) -> tuple[Content, ...]:
    """The items whose destination is missing or has another digest, in order.

    Raises:
        ssh.SshError: The connection failed.
    """
    result: list[Content] = []
    for item in items:
        if await remote_sha256(host, item.destination) != item.sha256:
            result.append(item)
    return tuple(result)


async def send(host: RemoteHost, item: Content) -> None:
    """Write one item (creating its directory) and check the host's digest afterwards.

    Raises:
        TransferVerificationError: The digest differs after the upload.
        ssh.TransferError: The upload failed (e.g. the file is held by a running program).
        ssh.SshError: The connection failed.
    """
    directory = parent_directory(item.destination)
    made = await host.run(commands.make_directory(directory), what=f"mkdir {directory}")
    if not made.ok:
        raise ssh.TransferError(host.address, f"cannot create directory {directory}")
    if item.data is not None:
        await host.put_bytes(item.data, item.destination, what=item.what)
    elif item.source is not None:
        await host.put_file(item.source, item.destination)
    else:
        raise ValueError(f"{item.destination}: neither data nor a source file")
    actual = await remote_sha256(host, item.destination)
    if actual != item.sha256:
        raise TransferVerificationError(
            host.address,
            f"{item.destination} has sha256 {actual} after upload, expected {item.sha256}",
        )
