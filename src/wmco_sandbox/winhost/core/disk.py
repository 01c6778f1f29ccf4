r"""The virtual NTFS disk of a simulated host.

A tree of directories and files under ``C:\\``, case-insensitive but case-preserving like NTFS.
Files keep their bytes, or, in "sink" mode, only size + SHA-256 once they grow past a threshold,
so that hundreds of hosts receiving the same 100 MB payloads fit in memory. A capacity limit
makes writes fail like a full disk. An archive written in sink mode is scanned while it streams
in (see :mod:`tarstream`) so that ``tar -xzf`` can still unpack it, and a Windows executable
(``MZ``) for its Go build information (see :mod:`gobuildinfo`) so that a simulated program knows
which release its image is (:meth:`VirtualDisk.build_info`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wmco_sandbox.winhost.core import gobuildinfo
from wmco_sandbox.winhost.core.faults import Faults
from wmco_sandbox.winhost.core.tarstream import TarError, TarMember, TarScanner

__all__ = ["DirNode", "DiskError", "FileNode", "FileWriter", "VirtualDisk", "WinPath"]

_BAD_CHARS = set('<>"|?*') | {chr(c) for c in range(32)}
_PE_MAGIC = b"MZ"

WinPath = tuple[str, ...]
"""A normalised absolute path: the components under ``C:\\`` (display case)."""


class DiskError(Exception):
    """A file-system error.

    Attributes:
        kind: ``notfound``, ``pathnotfound``, ``exists``, ``notdir``, ``isdir``, ``full``,
            ``notempty``, ``badpath``, ``sunk`` or ``inuse`` (a running process holds the file).
        path: The Windows path concerned.
        held: For ``inuse`` after a recursive removal: every held file that is left (the rest
            of the tree is gone, as on Windows).
    """

    def __init__(self, kind: str, path: str, held: tuple[str, ...] = ()) -> None:
        super().__init__(f"{kind}: {path}")
        self.kind = kind
        self.path = path
        self.held = held


@dataclass(slots=True)
class FileNode:
    """A file: bytes, or (sink mode) only size and digest.

    Attributes:
        data: The content, or None when sunk.
        size: Size in bytes.
        digest: Cached SHA-256 (always set when sunk).
        acl_inherit: False once ``icacls /inheritance:r`` removed inherited entries.
        acl_grants: Explicit grants (lower-case ``principal:perm``).
        members: Manifest of a sunk ``.tar.gz`` (None if not an archive or not scanned).
        tar_error: The scan error of a sunk archive.
        build_info: The Go build information of a sunk executable (None if it has none).
        mtime: Last write time (UNIX seconds).
    """

    data: bytearray | None = field(default_factory=bytearray)
    size: int = 0
    digest: bytes | None = None
    acl_inherit: bool = True
    acl_grants: frozenset[str] = frozenset()
    members: list[TarMember] | None = None
    tar_error: str | None = None
    build_info: gobuildinfo.BuildInfo | None = None
    mtime: float = field(default_factory=time.time)

    @property
    def restricted_acl(self) -> bool:
        """Only SYSTEM and Administrators have access (what sshd demands of the key file)."""
        allowed = {"administrators:f", "system:f", "*s-1-5-32-544:f", "*s-1-5-18:f"}
        has_system = bool(self.acl_grants & {"system:f", "*s-1-5-18:f"})
        return not self.acl_inherit and self.acl_grants <= allowed and has_system

    def sha256(self) -> bytes:
        """The SHA-256 digest of the content."""
        if self.digest is None:
            self.digest = hashlib.sha256(self.data or b"").digest()
        return self.digest


@dataclass(slots=True)
class DirNode:
    """A directory: children keyed by lower-case name -> (display name, node)."""

    children: dict[str, tuple[str, FileNode | DirNode]] = field(default_factory=dict)
    mtime: float = field(default_factory=time.time)


def _nothing_held() -> set[WinPath]:
    return set()


class VirtualDisk:
    r"""A case-insensitive tree of files under ``C:\\``.

    Files that a running process holds (its image; see :meth:`held`) cannot be overwritten,
    renamed or deleted: those operations raise :class:`DiskError` ``inuse``. Who holds what is
    asked of :attr:`held_paths`, which the machine points at its service control manager.

    Args:
        capacity: Bytes available for file content (None = unlimited).
        sink_threshold: Files larger than this keep only size + SHA-256 (None = keep bytes).
        faults: Live faults (``disk_full``).
    """

    def __init__(
        self,
        capacity: int | None = None,
        sink_threshold: int | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.root = DirNode()
        self.capacity = capacity
        self.sink_threshold = sink_threshold
        self.used = 0
        self.faults = faults
        self.held_paths: Callable[[], set[WinPath]] = _nothing_held

    def held(self, parts: WinPath) -> bool:
        """Whether a running process holds the file at ``parts``."""
        return tuple(p.lower() for p in parts) in self.held_paths()

    def _holds_below(self, parts: WinPath) -> bool:
        low = tuple(p.lower() for p in parts)
        return any(h[: len(low)] == low for h in self.held_paths())

    def _refuse_held(self, parts: WinPath) -> None:
        if self.held(parts):
            raise DiskError("inuse", self.format(self.canonical(parts)))

    # -- paths -------------------------------------------------------------------------------
    @staticmethod
    def parse(path: str, cwd: str = "C:\\Users\\Administrator") -> WinPath:
        r"""Normalise a Windows or SFTP path to components under ``C:\\``.

        Accepts ``C:\\a\\b``, ``C:/a/b``, ``/C:/a/b``, ``\\a`` (current drive) and paths relative
        to ``cwd``; resolves ``.`` and ``..``.

        Raises:
            DiskError: ``badpath`` for another drive, a UNC path or illegal characters.
        """
        p = path.replace("/", "\\")
        if len(p) >= 3 and p[0] == "\\" and p[2] == ":" and p[1].isalpha():
            p = p[1:]
        if p in ("\\", ""):
            p = "C:\\" if p else cwd
        if len(p) == 2 and p[1] == ":":
            p += "\\"
        if len(p) >= 2 and p[1] == ":":
            if p[0].upper() != "C":
                raise DiskError("badpath", path)
            rest = p[2:]
            if not rest.startswith("\\"):
                rest = cwd[2:] + "\\" + rest
        elif p.startswith("\\\\"):
            raise DiskError("badpath", path)
        elif p.startswith("\\"):
            rest = p
        else:
            rest = cwd[2:] + "\\" + p
        parts: list[str] = []
        for comp in rest.split("\\"):
            comp = comp.rstrip(" .") if comp not in (".", "..") else comp
            if comp in ("", "."):
                continue
            if comp == "..":
                if parts:
                    parts.pop()
                continue
            if any(c in _BAD_CHARS for c in comp) or ":" in comp:
                raise DiskError("badpath", path)
            parts.append(comp)
        return tuple(parts)

    @staticmethod
    def format(parts: WinPath) -> str:
        r"""Format components as ``C:\\a\\b``."""
        return "C:\\" + "\\".join(parts)

    def canonical(self, parts: WinPath) -> WinPath:
        """The components with the on-disk case for the existing prefix."""
        out: list[str] = []
        node: FileNode | DirNode | None = self.root
        for comp in parts:
            entry = node.children.get(comp.lower()) if isinstance(node, DirNode) else None
            if entry is None:
                node = None
                out.append(comp)
            else:
                out.append(entry[0])
                node = entry[1]
        return tuple(out)

    # -- queries -----------------------------------------------------------------------------
    def lookup(self, parts: WinPath) -> FileNode | DirNode | None:
        """The node at ``parts`` or None."""
        node: FileNode | DirNode = self.root
        for comp in parts:
            if not isinstance(node, DirNode):
                return None
            entry = node.children.get(comp.lower())
            if entry is None:
                return None
            node = entry[1]
        return node

    def get(self, path: str) -> FileNode | DirNode | None:
        """The node at a Windows path, or None (also for malformed paths)."""
        try:
            return self.lookup(self.parse(path))
        except DiskError:
            return None

    def read_file(self, path: str) -> bytes | None:
        """The bytes of a file; None if missing, a directory, or sunk."""
        node = self.get(path)
        if isinstance(node, FileNode) and node.data is not None:
            return bytes(node.data)
        return None

    def build_info(self, path: str) -> gobuildinfo.BuildInfo | None:
        """The Go build information of an executable (kept whole or sunk); None if it has none."""
        node = self.get(path)
        if not isinstance(node, FileNode):
            return None
        if node.data is None:
            return node.build_info
        return gobuildinfo.parse(bytes(node.data)) if node.data[:2] == _PE_MAGIC else None

    def parent_dir(self, parts: WinPath, path: str) -> DirNode:
        """The existing directory holding ``parts``.

        Raises:
            DiskError: ``pathnotfound`` / ``notdir``.
        """
        parent = self.lookup(parts[:-1])
        if parent is None:
            raise DiskError("pathnotfound", path)
        if not isinstance(parent, DirNode):
            raise DiskError("notdir", path)
        return parent

    # -- changes -----------------------------------------------------------------------------
    def mkdir(self, path: str, *, parents: bool = True, exist_ok: bool = True) -> DirNode:
        """Create a directory (and missing parents).

        Raises:
            DiskError: ``exists`` (a file, or a directory and not exist_ok), ``pathnotfound``.
        """
        parts = self.parse(path)
        node: DirNode = self.root
        for i, comp in enumerate(parts):
            entry = node.children.get(comp.lower())
            if entry is None:
                if not parents and i < len(parts) - 1:
                    raise DiskError("pathnotfound", path)
                new = DirNode()
                node.children[comp.lower()] = (comp, new)
                node.mtime = time.time()
                node = new
                continue
            child = entry[1]
            if not isinstance(child, DirNode):
                raise DiskError("exists", path)
            if i == len(parts) - 1 and not exist_ok:
                raise DiskError("exists", path)
            node = child
        return node

    def reserve(self, extra: int) -> None:
        """Account for ``extra`` more bytes of content.

        Raises:
            DiskError: ``full`` when over capacity (or the full-disk fault is on).
        """
        if extra <= 0:
            self.used += extra
            return
        if (self.faults is not None and self.faults.disk_full) or (
            self.capacity is not None and self.used + extra > self.capacity
        ):
            raise DiskError("full", "")
        self.used += extra

    def write_file(self, path: str, data: bytes, *, keep_acl: bool = True) -> FileNode:
        """Create or replace a file with ``data`` (parent must exist).

        Raises:
            DiskError: ``pathnotfound``, ``isdir``, ``full``, ``badpath``.
        """
        parts = self.parse(path)
        if not parts:
            raise DiskError("isdir", path)
        parent = self.parent_dir(parts, path)
        entry = parent.children.get(parts[-1].lower())
        old = entry[1] if entry else None
        if isinstance(old, DirNode):
            raise DiskError("isdir", path)
        if old is not None:
            self._refuse_held(parts)
        old_size = old.size if old else 0
        self.reserve(len(data) - old_size)
        node = FileNode()
        if old is not None and keep_acl:
            node.acl_inherit, node.acl_grants = old.acl_inherit, old.acl_grants
        self._fill(node, data)
        name = entry[0] if entry else parts[-1]
        parent.children[parts[-1].lower()] = (name, node)
        parent.mtime = time.time()
        return node

    def write_sunk(
        self,
        path: str,
        size: int,
        digest: bytes,
        build_info: gobuildinfo.BuildInfo | None = None,
    ) -> FileNode:
        """Create or replace a file known only by size and digest (sink mode extraction)."""
        node = self.write_file(path, b"")
        self.reserve(size)
        node.data, node.size, node.digest = None, size, digest
        node.build_info = build_info
        return node

    def _fill(self, node: FileNode, data: bytes) -> None:
        node.size = len(data)
        node.digest = None
        if self.sink_threshold is not None and len(data) > self.sink_threshold:
            node.data = None
            node.digest = hashlib.sha256(data).digest()
            if data[:2] == b"\x1f\x8b":
                scanner = TarScanner(keep_limit=self.sink_threshold)
                scanner.feed(data)
                self._attach_manifest(node, scanner)
            elif data[:2] == _PE_MAGIC:
                node.build_info = gobuildinfo.parse(data)
        else:
            node.data = bytearray(data)

    @staticmethod
    def _attach_manifest(node: FileNode, scanner: TarScanner) -> None:
        try:
            node.members = scanner.finish()
        except TarError as exc:
            node.tar_error = str(exc)

    def rename(self, old: str, new: str) -> None:
        """Move a file or directory (the target must not exist).

        Raises:
            DiskError: ``notfound``, ``exists``, ``pathnotfound``.
        """
        src, dst = self.parse(old), self.parse(new)
        node = self.lookup(src)
        if node is None or not src:
            raise DiskError("notfound", old)
        if self._holds_below(src):
            raise DiskError("inuse", self.format(self.canonical(src)))
        if self.lookup(dst) is not None:
            raise DiskError("exists", new)
        parent = self.parent_dir(dst, new)
        old_parent = self.lookup(src[:-1])
        assert isinstance(old_parent, DirNode)
        del old_parent.children[src[-1].lower()]
        parent.children[dst[-1].lower()] = (dst[-1], node)

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file or directory.

        A held file is not removed; a recursive removal then removes everything else and
        leaves the held files and the directories above them.

        Raises:
            DiskError: ``notfound``; ``notempty`` for a non-empty directory without recursive;
                ``inuse`` (with ``held``) when a running process holds a file.
        """
        parts = self.parse(path)
        node = self.lookup(parts)
        if node is None or not parts:
            raise DiskError("notfound", path)
        if isinstance(node, DirNode) and node.children and not recursive:
            raise DiskError("notempty", path)
        if isinstance(node, FileNode):
            self._refuse_held(parts)
        elif self._holds_below(parts):
            held = tuple(self._prune(self.canonical(parts), node))
            raise DiskError("inuse", held[0], held)
        self.used -= self._size_of(node)
        parent = self.lookup(parts[:-1])
        assert isinstance(parent, DirNode)
        del parent.children[parts[-1].lower()]

    def _prune(self, parts: WinPath, node: DirNode) -> list[str]:
        """Remove every unheld descendant of a directory; return the held files left."""
        held: list[str] = []
        for key, (shown, child) in list(node.children.items()):
            child_parts = (*parts, shown)
            if isinstance(child, DirNode):
                below = self._prune(child_parts, child)
                held.extend(below)
                if below:
                    continue
            elif self.held(child_parts):
                held.append(self.format(child_parts))
                continue
            self.used -= self._size_of(child)
            del node.children[key]
        return held

    def _size_of(self, node: FileNode | DirNode) -> int:
        if isinstance(node, FileNode):
            return node.size
        return sum(self._size_of(child) for _, child in node.children.values())

    def append_file(self, path: str, data: bytes) -> None:
        """Append to a file, creating it (a log); a sunk file keeps only its size growing.

        Raises:
            DiskError: As :meth:`open_writer` (``pathnotfound`` when the directory is missing).
        """
        writer = self.open_writer(path, truncate=False, create=True, exclusive=False)
        writer.write(writer.node.size, data)
        writer.close()

    def open_writer(
        self, path: str, *, truncate: bool, create: bool, exclusive: bool
    ) -> FileWriter:
        """Open a file for (SFTP) writing.

        Raises:
            DiskError: ``exists`` (exclusive), ``notfound``, ``pathnotfound``, ``isdir``.
        """
        parts = self.parse(path)
        if not parts:
            raise DiskError("isdir", path)
        parent = self.parent_dir(parts, path)
        entry = parent.children.get(parts[-1].lower())
        if entry is not None:
            if isinstance(entry[1], DirNode):
                raise DiskError("isdir", path)
            if exclusive:
                raise DiskError("exists", path)
            self._refuse_held(parts)
            node = entry[1]
            if truncate:
                self.used -= node.size
                node.data, node.size, node.digest, node.members = bytearray(), 0, None, None
                node.tar_error, node.build_info = None, None
        else:
            if not create:
                raise DiskError("notfound", path)
            node = FileNode()
            parent.children[parts[-1].lower()] = (parts[-1], node)
        return FileWriter(self, node)


class FileWriter:
    """Writes at offsets into a file; switches to sink mode past the threshold.

    In sink mode contiguous data is hashed (and scanned if it is a gzip stream or a Windows
    executable) as it arrives; out-of-order blocks wait in a small reorder buffer.
    """

    def __init__(self, disk: VirtualDisk, node: FileNode) -> None:
        self.disk = disk
        self.node = node
        self._hasher: object | None = None
        self._scanner: TarScanner | None = None
        self._build_info: gobuildinfo.BuildInfoScanner | None = None
        self._next = 0
        self._waiting: dict[int, bytes] = {}

    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset``.

        Raises:
            DiskError: ``full``; ``sunk`` for a rewrite of already hashed bytes.
        """
        node = self.node
        end = offset + len(data)
        self.disk.reserve(max(0, end - node.size))
        node.size = max(node.size, end)
        node.digest = None
        node.mtime = time.time()
        if node.data is not None:
            buf = node.data
            if len(buf) < offset:
                buf.extend(b"\0" * (offset - len(buf)))
            buf[offset:end] = data
            threshold = self.disk.sink_threshold
            if threshold is not None and len(buf) > threshold:
                self._to_sink()
            return
        self._feed(offset, data)

    def _to_sink(self) -> None:
        data = bytes(self.node.data or b"")
        self.node.data = None
        self._hasher = hashlib.sha256()
        if data[:2] == b"\x1f\x8b":
            self._scanner = TarScanner(keep_limit=self.disk.sink_threshold)
        elif data[:2] == _PE_MAGIC:
            self._build_info = gobuildinfo.BuildInfoScanner()
        self._next = 0
        self._feed(0, data)

    def _feed(self, offset: int, data: bytes) -> None:
        if offset < self._next:
            raise DiskError("sunk", "")
        self._waiting[offset] = data
        while self._next in self._waiting:
            chunk = self._waiting.pop(self._next)
            self._hasher.update(chunk)  # type: ignore[union-attr]
            if self._scanner is not None:
                self._scanner.feed(chunk)
            if self._build_info is not None and not self._build_info.done:
                self._build_info.feed(chunk)
            self._next += len(chunk)

    def close(self) -> None:
        """Finish the file: digest and manifest of a sunk file are fixed here."""
        node = self.node
        if node.data is None and self._hasher is not None:
            if self._waiting:
                node.tar_error = "Damaged tar archive"
            node.digest = self._hasher.digest()  # type: ignore[attr-defined]
            if self._scanner is not None:
                VirtualDisk._attach_manifest(node, self._scanner)
            if self._build_info is not None:
                node.build_info = self._build_info.result
