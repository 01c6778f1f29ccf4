r"""The files of one pass as ``.tar.gz`` archives, unpacked on the host by its own ``tar.exe``.

Windows Server 2019 and later ship bsdtar as ``C:\Windows\System32\tar.exe``. Sending the files
that differ as one compressed archive over the host's one SFTP session, and unpacking it with
one command, replaces a directory, an upload and a hash query per file (issue 12 §4). Members are
named by their destination relative to ``C:\`` (``k/kubelet.exe``), so ``tar -xzf A -C C:\``
puts every file where it belongs and creates the directories on the way.

Two kinds of archive:

* payload files (a local source): :class:`ArchiveCache` builds each distinct set once (keyed by
  the destinations and digests it holds), in a worker thread, and keeps it on disk for the next
  host; a fresh fleet therefore compresses the payload once, and an upgrade that changes one file
  builds an archive of that one file;
* generated files (bytes: configuration, certificates, a bootstrap kubeconfig): built in memory
  per host by :func:`build_bytes`; they never touch the operator's disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import os
import pathlib
import tarfile
import tempfile
import time
from collections.abc import Sequence
from typing import Final, Protocol

DRIVE: Final = "C:\\"
"""Every destination is on the system drive; members are named relative to it."""

COMPRESS_LEVEL: Final = 6
"""gzip's default: the payload is compressed once per version, so the ratio wins over speed."""

KEEP_ARCHIVES: Final = 4
"""Archives the cache keeps on disk (the newest); older ones are deleted."""


class Member(Protocol):
    """What goes into an archive (``wmco.windows.transfer.Content``)."""

    @property
    def destination(self) -> str:
        """Absolute Windows path on ``C:``."""
        ...

    @property
    def sha256(self) -> str:
        """Lower-case hex digest of the content."""
        ...

    @property
    def source(self) -> pathlib.Path | None:
        """Local file with the content."""
        ...

    @property
    def data(self) -> bytes | None:
        """The content itself."""
        ...


def member_name(destination: str) -> str:
    r"""The archive name of a destination: ``C:\k\kubelet.exe`` -> ``k/kubelet.exe``.

    Raises:
        ValueError: The destination is not an absolute path on ``C:``, or climbs out of it.
    """
    if destination[:3].upper() != DRIVE:
        raise ValueError(f"{destination}: only files on {DRIVE} can be sent as an archive")
    parts = [part for part in destination[3:].split("\\") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"{destination}: not a file path under {DRIVE}")
    return "/".join(parts)


def _info(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o644
    return info


def _write(archive: tarfile.TarFile, members: Sequence[Member], mtime: float) -> None:
    for member in members:
        name = member_name(member.destination)
        if member.data is not None:
            archive.addfile(_info(name, len(member.data), mtime), io.BytesIO(member.data))
        elif member.source is not None:
            with member.source.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                archive.addfile(_info(name, size, mtime), handle)
        else:
            raise ValueError(f"{member.destination}: neither data nor a source file")


def build_bytes(members: Sequence[Member]) -> bytes:
    """A ``.tar.gz`` of ``members`` in memory (generated files: small).

    Raises:
        ValueError: A destination cannot be a member (see :func:`member_name`).
    """
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        _write(archive, members, time.time())
    return buffer.getvalue()


def build_file(members: Sequence[Member], path: pathlib.Path) -> None:
    """A ``.tar.gz`` of ``members`` at ``path``, written beside it and renamed into place."""
    partial = path.with_name(path.name + ".partial")
    with (
        gzip.GzipFile(partial, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        _write(archive, members, time.time())
    partial.replace(path)


def set_key(members: Sequence[Member]) -> str:
    """The identity of a set of members: its destinations and digests, order ignored."""
    lines = sorted(f"{member.destination.lower()}\t{member.sha256.lower()}" for member in members)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:32]


class ArchiveCache:
    """Archives of payload files, each set built once and kept on disk (see the module docstring).

    Args:
        directory: Where the archives live (made on first use); a temporary directory of this
            process when omitted.
    """

    def __init__(self, directory: pathlib.Path | None = None) -> None:
        self._directory = directory
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def directory(self) -> pathlib.Path:
        """The cache's directory (made on first use)."""
        if self._directory is None:
            self._directory = pathlib.Path(tempfile.mkdtemp(prefix="wmco-archives-"))
        self._directory.mkdir(parents=True, exist_ok=True)
        return self._directory

    async def archive(self, members: Sequence[Member]) -> pathlib.Path:
        """The archive of exactly ``members``, built now if no earlier call built it.

        Concurrent calls for one set wait for one build; the build runs in a worker thread.

        Raises:
            ValueError: A destination cannot be a member.
            OSError: The archive could not be written (e.g. a full disk).
        """
        key = set_key(members)
        path = self.directory / f"{key}.tar.gz"
        async with self._locks.setdefault(key, asyncio.Lock()):
            if not path.exists():
                await asyncio.to_thread(build_file, members, path)
                self._prune(keep=path)
        return path

    def _prune(self, keep: pathlib.Path) -> None:
        archives = sorted(
            self.directory.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for old in archives[KEEP_ARCHIVES:]:
            if old != keep:
                with contextlib.suppress(OSError):
                    old.unlink()


CACHE: Final = ArchiveCache()
"""The operator's archive cache (one per process)."""
