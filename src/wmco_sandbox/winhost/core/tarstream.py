"""Streaming reader for ``.tar.gz`` archives.

The host unpacks archives with ``tar -xzf`` for real. Hosts in "sink" mode do not keep the bytes
of large files, so an archive is scanned WHILE it is written (over SFTP): the scanner records, for
every member, its name, size, SHA-256 and (when small) its bytes. Extraction then recreates the
members from that manifest. Hosts that keep bytes run the same scanner on the stored archive, so
both modes share one code path and one set of errors.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field

from wmco_sandbox.winhost.core import gobuildinfo

__all__ = ["TarError", "TarMember", "TarScanner"]

_BLOCK = 512


class TarError(Exception):
    """The archive is not a valid gzip-compressed tar stream (message as bsdtar words it)."""


@dataclass(slots=True)
class TarMember:
    """One member of an archive.

    Attributes:
        name: Path inside the archive, with ``/`` separators.
        is_dir: True for a directory entry.
        size: Size in bytes.
        digest: SHA-256 of the content.
        data: The content when at most the scanner's keep limit, else None.
        build_info: The Go build information of a member not kept (an executable), if any.
    """

    name: str
    is_dir: bool
    size: int
    digest: bytes
    data: bytes | None
    build_info: gobuildinfo.BuildInfo | None = None


@dataclass(slots=True)
class _Current:
    name: str
    kind: str
    remaining: int
    size: int
    hasher: object
    buf: bytearray | None
    padding: int
    build: gobuildinfo.BuildInfoScanner | None = None
    started: bool = False


@dataclass(slots=True)
class TarScanner:
    """Incremental gzip+tar parser: feed bytes in order, then call :meth:`finish`.

    Attributes:
        keep_limit: Members up to this size keep their bytes (None = keep all).
        members: Members seen so far.
    """

    keep_limit: int | None = None
    members: list[TarMember] = field(default_factory=list)
    _zlib: object = field(default_factory=lambda: zlib.decompressobj(wbits=31))
    _pending: bytearray = field(default_factory=bytearray)
    _cur: _Current | None = None
    _skip: int = 0
    _next_name: str | None = None
    _ended: bool = False
    _error: str | None = None
    _fed: int = 0

    def feed(self, data: bytes) -> None:
        """Feed the next compressed bytes; errors are remembered and raised by finish()."""
        if self._error is not None or self._ended or not data:
            return
        if self._fed == 0 and data[:1] != b"\x1f":
            self._error = "Error opening archive: Unrecognized archive format"
            return
        self._fed += len(data)
        try:
            out = self._zlib.decompress(data)  # type: ignore[attr-defined]
        except zlib.error:
            self._error = "Error opening archive: Unrecognized archive format"
            return
        try:
            self._consume(out)
        except TarError as exc:
            self._error = str(exc)

    def finish(self) -> list[TarMember]:
        """End of input: return the members or raise :class:`TarError`."""
        if self._error is not None:
            raise TarError(self._error)
        if self._fed == 0:
            raise TarError("Error opening archive: Unrecognized archive format")
        if not self._ended and (
            self._cur is not None or self._pending or not self._zlib.eof  # type: ignore[attr-defined]
        ):
            raise TarError("Truncated input file (needed 512 bytes, only 0 available)")
        return self.members

    def _consume(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._ended:
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
                continue
            cur = self._cur
            if cur is not None:
                n = min(cur.remaining, len(view))
                chunk = view[:n]
                cur.hasher.update(chunk)  # type: ignore[attr-defined]
                if cur.buf is not None:
                    cur.buf += chunk
                else:
                    self._scan_build_info(cur, bytes(chunk))
                cur.remaining -= n
                view = view[n:]
                if cur.remaining == 0:
                    self._close_member(cur)
                continue
            need = _BLOCK - len(self._pending)
            self._pending += view[:need]
            view = view[need:]
            if len(self._pending) == _BLOCK:
                header = bytes(self._pending)
                self._pending.clear()
                self._header(header)

    def _header(self, block: bytes) -> None:
        if block == b"\0" * _BLOCK:
            self._ended = True
            return
        stored = _octal(block[148:156])
        computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
        if stored != computed:
            raise TarError("Damaged tar archive")
        name = block[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        if block[257:262] == b"ustar":
            prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
            if prefix:
                name = f"{prefix}/{name}"
        if self._next_name is not None:
            name, self._next_name = self._next_name, None
        size = _size(block[124:136])
        kind = chr(block[156]) if block[156] else "0"
        keep = kind in "Lx" or self.keep_limit is None or size <= self.keep_limit
        padding = (-size) % _BLOCK
        self._cur = _Current(
            name, kind, size, size, hashlib.sha256(), bytearray() if keep else None, padding
        )
        if size == 0:
            self._close_member(self._cur)

    @staticmethod
    def _scan_build_info(cur: _Current, chunk: bytes) -> None:
        # A member too big to keep is scanned for Go build information as the disk does for a
        # sunk executable (one that starts with "MZ"), so the image stays identifiable.
        if not cur.started:
            cur.started = True
            if chunk[:2] == b"MZ":
                cur.build = gobuildinfo.BuildInfoScanner()
        if cur.build is not None and not cur.build.done:
            cur.build.feed(chunk)

    def _close_member(self, cur: _Current) -> None:
        self._cur = None
        self._skip = cur.padding
        data = bytes(cur.buf) if cur.buf is not None else None
        if cur.kind == "L":
            self._next_name = (data or b"").split(b"\0", 1)[0].decode("utf-8", "replace")
            return
        if cur.kind == "x":
            for key, value in _pax(data or b""):
                if key == "path":
                    self._next_name = value
            return
        if cur.kind not in "05":
            return
        digest = cur.hasher.digest()  # type: ignore[attr-defined]
        info = cur.build.result if cur.build is not None else None
        self.members.append(TarMember(cur.name, cur.kind == "5", cur.size, digest, data, info))


def _octal(field_: bytes) -> int:
    text = field_.split(b"\0", 1)[0].strip(b" \0")
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise TarError("Damaged tar archive") from None


def _size(field_: bytes) -> int:
    if field_[0] & 0x80:
        return int.from_bytes(field_[1:], "big")
    return _octal(field_)


def _pax(data: bytes) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space])
        record = data[space + 1 : pos + length - 1].decode("utf-8", "replace")
        key, _, value = record.partition("=")
        out.append((key, value))
        pos += length
    return out
