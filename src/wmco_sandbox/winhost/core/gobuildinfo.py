r"""The build information a Go program carries, read from its bytes (what ``go version -m`` prints).

A simulated program knows which release it is from its own file, as the real one does: every Go
binary since Go 1.18 holds a block that starts with the magic ``\xff Go buildinf:`` at a 16-byte
aligned offset, followed by the pointer size, a flags byte and (flag ``0x2``: strings inline) two
length-prefixed strings, the Go version and the module information (``path``, ``mod``, ``dep``,
``=>`` and ``build`` lines between two 16-byte sentinels). This is the layout
``debug/buildinfo`` reads; older layouts (pointers into the data segment) are not read.

Hosts in sink mode keep no bytes of big files, so :class:`BuildInfoScanner` finds the block
while the file streams in, as :mod:`tarstream` does for archives; :func:`parse` reads a file
that is kept whole. Both use the same decoder, so they agree.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Final

__all__ = ["MAGIC", "BuildInfo", "BuildInfoScanner", "Module", "parse", "parse_modinfo"]

MAGIC: Final = b"\xff Go buildinf:"
_ALIGN: Final = 16
_HEADER: Final = 32
_FLAG_INLINE: Final = 0x2
_MAX_STRING: Final = 1 << 20
_MAX_BLOCK: Final = 2 * _MAX_STRING + _HEADER + 20
_SENTINEL: Final = 16


@dataclasses.dataclass(frozen=True, slots=True)
class Module:
    """A module as the build information lists it.

    Attributes:
        path: The module path.
        version: Its version (``(devel)`` for a main module built from a directory).
        sum: The ``h1:`` checksum (empty when Go recorded none).
        replacement: What a ``replace`` directive put in its place, if anything.
    """

    path: str
    version: str
    sum: str = ""
    replacement: Module | None = None

    @property
    def effective(self) -> Module:
        """The module whose code was compiled (the replacement, if there is one)."""
        return self.replacement or self


@dataclasses.dataclass(frozen=True, slots=True)
class BuildInfo:
    """What a Go binary says about how it was built.

    Attributes:
        go_version: The toolchain, e.g. ``go1.26.8``.
        path: The main package's import path, e.g. ``k8s.io/kubernetes/cmd/kubelet``.
        main: The module of the main package (``go build <package>`` run in a wrapper module
            records the upstream module with its version and sum, not the wrapper).
        deps: The dependency modules, in the order Go lists them.
        settings: The ``build`` lines (``GOOS``, ``CGO_ENABLED``, ...), as key/value pairs.
    """

    go_version: str
    path: str
    main: Module | None
    deps: tuple[Module, ...]
    settings: tuple[tuple[str, str], ...]

    def module(self, path: str) -> Module | None:
        """The main module or dependency with this module path, if the binary has it."""
        for module in (self.main, *self.deps):
            if module is not None and module.path == path:
                return module
        return None

    def package_module(self) -> Module | None:
        """The module that provides the main package (the longest path prefix of :attr:`path`)."""
        owners = [
            module
            for module in (self.main, *self.deps)
            if module is not None
            and (self.path == module.path or self.path.startswith(module.path + "/"))
        ]
        return max(owners, key=lambda module: len(module.path), default=None)

    def setting(self, key: str) -> str | None:
        """The value of one ``build`` setting, e.g. ``GOOS``."""
        for name, value in self.settings:
            if name == key:
                return value
        return None


def _module(fields: list[str]) -> Module:
    if len(fields) not in (2, 3):
        raise ValueError(f"expected path, version and sum, got {fields!r}")
    return Module(fields[0], fields[1], fields[2] if len(fields) == 3 else "")


def parse_modinfo(
    text: str,
) -> tuple[str, Module | None, tuple[Module, ...], tuple[tuple[str, str], ...]]:
    """Parse module information lines the way ``runtime/debug.ParseBuildInfo`` does.

    Returns:
        The main package path, the main module, the dependencies and the build settings.

    Raises:
        ValueError: A malformed line.
    """
    path = ""
    main: Module | None = None
    deps: list[Module] = []
    settings: list[tuple[str, str]] = []
    last: str | None = None
    for line in text.splitlines():
        if not line:
            continue
        word, _, rest = line.partition("\t")
        fields = rest.split("\t")
        if word == "path":
            path = rest
        elif word == "mod":
            main, last = _module(fields), "mod"
        elif word == "dep":
            deps.append(_module(fields))
            last = "dep"
        elif word == "=>":
            replacement = _module(fields)
            if last == "mod" and main is not None:
                main = dataclasses.replace(main, replacement=replacement)
            elif last == "dep" and deps:
                deps[-1] = dataclasses.replace(deps[-1], replacement=replacement)
            else:
                raise ValueError("replacement with no module on previous line")
            last = None
        elif word == "build":
            key, eq, value = rest.partition("=")
            if not eq:
                raise ValueError(f"invalid build line {line!r}")
            settings.append((key, value))
        elif word != "go":
            raise ValueError(f"unexpected line {line!r}")
    return path, main, tuple(deps), tuple(settings)


class _Need(enum.Enum):
    MORE = "more"
    INVALID = "invalid"


def _uvarint(data: bytes | bytearray, pos: int) -> tuple[int, int] | _Need:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            return _Need.INVALID
    return _Need.MORE


def _string(data: bytes | bytearray, pos: int) -> tuple[bytes, int] | _Need:
    head = _uvarint(data, pos)
    if isinstance(head, _Need):
        return head
    length, start = head
    if length > _MAX_STRING:
        return _Need.INVALID
    if start + length > len(data):
        return _Need.MORE
    return bytes(data[start : start + length]), start + length


def _decode(block: bytes | bytearray) -> BuildInfo | _Need:
    """Decode a block that starts with :data:`MAGIC` (maybe cut short)."""
    if len(block) < _HEADER:
        return _Need.MORE
    if block[len(MAGIC)] not in (4, 8) or not block[len(MAGIC) + 1] & _FLAG_INLINE:
        return _Need.INVALID
    version = _string(block, _HEADER)
    if isinstance(version, _Need):
        return version
    raw, pos = version
    modinfo = _string(block, pos)
    if isinstance(modinfo, _Need):
        return modinfo
    raw_mod = modinfo[0]
    if len(raw_mod) >= 2 * _SENTINEL + 1 and raw_mod[-_SENTINEL - 1] == ord("\n"):
        raw_mod = raw_mod[_SENTINEL:-_SENTINEL]
    try:
        path, main, deps, settings = parse_modinfo(raw_mod.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _Need.INVALID
    return BuildInfo(raw.decode("utf-8", "replace"), path, main, deps, settings)


def parse(data: bytes) -> BuildInfo | None:
    """The build information of a whole file; ``None`` if it has none (not a Go binary)."""
    scanner = BuildInfoScanner()
    scanner.feed(data)
    return scanner.result


class BuildInfoScanner:
    """Finds the build information in a file fed in order, chunk by chunk.

    Attributes:
        result: The build information, once found (later bytes are ignored).
    """

    def __init__(self) -> None:
        self.result: BuildInfo | None = None
        self._window = bytearray()
        self._base = 0
        self._search_from = 0
        self._done = False

    @property
    def done(self) -> bool:
        """Whether the block was found, or the file can have none any more."""
        return self._done

    def feed(self, chunk: bytes) -> None:
        """Feed the next bytes of the file."""
        if self._done or not chunk:
            return
        self._window += chunk
        while True:
            index = self._window.find(MAGIC, self._search_from)
            if index < 0:
                keep = len(MAGIC) - 1
                cut = max(0, len(self._window) - keep)
                del self._window[:cut]
                self._base += cut
                self._search_from = 0
                return
            if (self._base + index) % _ALIGN:
                self._search_from = index + 1
                continue
            decoded = _decode(self._window[index:])
            if isinstance(decoded, BuildInfo):
                self.result, self._done = decoded, True
                self._window = bytearray()
                return
            if decoded is _Need.MORE and len(self._window) - index < _MAX_BLOCK:
                del self._window[:index]
                self._base += index
                self._search_from = 0
                return
            self._search_from = index + 1
