"""Synthetic Go executables: a few bytes of "PE" around a real Go build information block.

The layout is the one ``debug/buildinfo`` reads (Go 1.18+): the magic at a 16-byte aligned
offset, pointer size 8, flags 0x2 (strings inline), 16 bytes of padding, then the Go version
and the module information, each prefixed with its length as a uvarint, the module information
between Go's two 16-byte sentinels. ``tests/payload`` checks the parser against ``go version -m``
on the real binaries; these stand-ins let the simulator's tests run without them.
"""

from __future__ import annotations

from wmco_sandbox.winhost.core.gobuildinfo import MAGIC

START_SENTINEL = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
END_SENTINEL = bytes.fromhex("f932433186182072008242104116d8f2")


def uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def modinfo(
    package: str, main: tuple[str, str], deps: list[tuple[str, str]], replaced: str = ""
) -> str:
    """Module information as ``go build <package>`` in a wrapper module records it."""
    lines = [f"path\t{package}", f"mod\t{main[0]}\t{main[1]}\th1:{'M' * 43}="]
    for path, version in deps:
        lines.append(f"dep\t{path}\t{version}\th1:{'A' * 43}=")
        if replaced and path == replaced:
            lines.append(f"=>\t{path}\t{version}-replaced\th1:{'B' * 43}=")
    lines += ["build\t-buildmode=exe", "build\tCGO_ENABLED=0", "build\tGOOS=windows"]
    return "\n".join(lines) + "\n"


def block(info: str, go_version: str = "go1.26.8") -> bytes:
    """The build information block for ``info`` (module information lines)."""
    version = go_version.encode()
    mod = START_SENTINEL + info.encode() + END_SENTINEL
    return (
        MAGIC
        + bytes([8, 0x2])
        + b"\0" * 16
        + uvarint(len(version))
        + version
        + uvarint(len(mod))
        + mod
    )


def go_binary(info: str, *, size: int = 200_000, at: int = 96 * 1024, decoys: bool = True) -> bytes:
    """An ``MZ`` file of ``size`` bytes with the block at offset ``at`` (a multiple of 16).

    With ``decoys``, the magic also appears earlier at an unaligned offset and, aligned, with a
    header no Go linker writes: a reader must skip both.
    """
    assert at % 16 == 0
    data = bytearray(b"MZ" + b"\x90" * (size - 2))
    if decoys:
        data[1001 : 1001 + len(MAGIC)] = MAGIC
        data[4096 : 4096 + len(MAGIC) + 2] = MAGIC + bytes([3, 0])
    payload = block(info)
    data[at : at + len(payload)] = payload
    return bytes(data)
