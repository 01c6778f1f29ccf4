"""Files on a Windows host, compared and written by SHA-256.

The flow first learns which files differ (:func:`differing_in`: the digests of one look at the
host, ``commands.drift_probe``) and only then, once the services that hold them are stopped,
writes them (:func:`stage`: the files as ``.tar.gz`` archives over the host's one SFTP session,
then script stages that unpack them with the host's ``tar.exe`` and check every digest, so a
truncated upload is caught here and not by a service that fails to start later). Splitting the
two is what lets the operator stop exactly the services whose files change, and nothing else
(contract §5).

A file is a :class:`Content`: a destination, the digest it must have, and either a local file (the
payload) or bytes (what the operator generates). The host is anything with ``run``, ``put_file``
and ``put_bytes`` (:class:`wmco.windows.ssh.WindowsHost`, the configure flow's reconnecting
runner, or a fake in tests).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

from wmco.windows import answers, archive, batch, commands, layout, ssh, sshfailures


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
        inline: Small text that is no secret: the script writes it itself
            (``commands.write_text``) instead of an upload (:meth:`of_text`).
    """

    destination: str
    sha256: str
    source: pathlib.Path | None = None
    data: bytes | None = dataclasses.field(default=None, repr=False)
    what: str = "file"
    inline: bool = False

    @classmethod
    def of_bytes(cls, destination: str, data: bytes, what: str) -> Content:
        """Generated content."""
        return cls(destination, hashlib.sha256(data).hexdigest(), data=data, what=what)

    @classmethod
    def of_text(cls, destination: str, text: str, what: str) -> Content:
        """Generated text that is no secret, written by the script itself.

        It must be ASCII with one kind of line end: :func:`wmco.windows.commands.write_text`
        refuses anything else when the stage is built.
        """
        data = text.encode("utf-8")
        return cls(destination, hashlib.sha256(data).hexdigest(), data=data, what=what, inline=True)

    @classmethod
    def of_file(cls, item: TransferItem) -> Content:
        """A local file whose digest is already known (a payload manifest entry)."""
        return cls(item.destination, item.sha256.lower(), source=item.source, what=item.source.name)


def parent_directory(windows_path: str) -> str:
    r"""The directory part of an absolute Windows path (``C:\k\x.exe`` -> ``C:\k``)."""
    return str(pathlib.PureWindowsPath(windows_path).parent)


async def remote_sha256(host: RemoteHost, destination: str) -> str | None:
    """The lower-case SHA-256 of a file on the host, or ``None`` if it is absent.

    Raises:
        sshfailures.TransferError: The connection dropped before an answer came (not the same as absent).
        answers.CommandOutputError: The host answered something that is not a digest.
    """
    result = await host.run(commands.file_hash(destination), what=f"hash of {destination}")
    if result.exit_status is None:
        raise sshfailures.TransferError(host.address, f"no answer to the hash of {destination}")
    if not result.ok:
        return None
    return answers.parse_file_hash(result.stdout)


def differing_in(items: Sequence[Content], hashes: Mapping[str, str]) -> tuple[Content, ...]:
    """The items whose destination is missing or has another digest in a look at the host.

    Args:
        items: What the files must contain.
        hashes: Lower-case path to lower-case SHA-256 of the files that exist (the answer of
            ``commands.drift_probe``, see ``probeanswers.ProbeReport.hashes``).
    """
    return tuple(item for item in items if hashes.get(item.destination.lower()) != item.sha256)


ARCHIVE_NAMES: Final = ("wmco-payload.tar.gz", "wmco-files.tar.gz")
"""The staged archives' names in ``layout.STAGING_DIR``: payload files, then generated ones."""


def _written_inline(items: Sequence[Content]) -> batch.Stage:
    """The stage that writes small text files itself, without an upload.

    These are the network files of the ``ovn-hybrid`` steps. They follow the connectivity blip
    of hybrid-overlay-node, so writing them inline lets the host's one SFTP session serve the
    whole flow.

    Raises:
        ValueError: An item is not text ``commands.write_text`` can write.
    """
    statements = [
        commands.make_directories(sorted({parent_directory(i.destination) for i in items}))
    ]
    for item in items:
        assert item.data is not None, item.destination
        try:
            text = item.data.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{item.destination}: not ASCII text") from None
        statements.append(commands.write_text(item.destination, text))
    return batch.Stage(f"writing of {len(items)} files", tuple(statements))


async def stage(
    host: RemoteHost,
    items: Sequence[Content],
    cache: archive.ArchiveCache = archive.CACHE,
) -> tuple[batch.Stage, ...]:
    """Upload ``items`` as at most two ``.tar.gz``; answer the stages that unpack and check them.

    Payload files (a local source) go in an archive the cache builds once per set of files;
    generated files (bytes) in a small one made for this host. Both go over the host's one SFTP
    session to ``layout.STAGING_DIR``. Inline items (:meth:`Content.of_text`) are written by
    the script itself. Nothing on the host changes until the stages run: the
    unpacking (:func:`wmco.windows.commands.unpack_archive`, after the services that hold the
    files have stopped), then the digest of every item (:func:`wmco.windows.batch.expect_hash`),
    so a truncated or wrong file stops the script before any service starts.

    Raises:
        ValueError: A destination is not a file on ``C:``.
        sshfailures.SshError: An upload failed.
    """
    if not items:
        return ()
    payload = [item for item in items if item.data is None]
    generated = [item for item in items if item.data is not None and not item.inline]
    inline = [item for item in items if item.inline]
    stages: list[batch.Stage] = [_written_inline(inline)] if inline else []
    for group, name in zip((payload, generated), ARCHIVE_NAMES, strict=True):
        if not group:
            continue
        remote = f"{layout.STAGING_DIR}\\{name}"
        if group is payload:
            await host.put_file(await cache.archive(group), remote)
        else:
            await host.put_bytes(archive.build_bytes(group), remote, what=f"archive of {name}")
        stages.append(
            batch.Stage(
                f"unpacking of {len(group)} files ({name})",
                (commands.unpack_archive(remote, archive.DRIVE),),
            )
        )
    stages.append(
        batch.Stage(
            f"check of the {len(items)} files written",
            tuple(batch.expect_hash(item.destination, item.sha256) for item in items),
        )
    )
    return tuple(stages)
