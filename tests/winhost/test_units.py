"""Units: Windows command-line rules, PowerShell quoting, tar streaming, the disk."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wmco_sandbox.winhost.core.disk import DiskError, VirtualDisk
from wmco_sandbox.winhost.core.tarstream import TarError, TarScanner
from wmco_sandbox.winhost.core.winargv import join_ps51_native, split_command_line
from wmco_sandbox.winhost.powershell.parser import (
    Command,
    Literal,
    Pipeline,
    ValueArg,
    parse_script,
)


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ('"C:\\Program Files\\x.exe" a "b c" d', ["C:\\Program Files\\x.exe", "a", "b c", "d"]),
        ('x.exe a\\\\"b c"', ["x.exe", "a\\b c"]),
        ('x.exe a\\"b', ["x.exe", 'a"b']),
        ('x.exe "a""b"', ["x.exe", 'a"b']),
        ("x.exe C:\\k\\ next", ["x.exe", "C:\\k\\", "next"]),
        (
            'sc.exe create k binPath= "C:\\k\\k.exe --a=1" start= auto',
            ["sc.exe", "create", "k", "binPath=", "C:\\k\\k.exe --a=1", "start=", "auto"],
        ),
    ],
)
def test_split_command_line(line: str, argv: list[str]) -> None:
    assert split_command_line(line) == argv


def test_ps51_native_quoting() -> None:
    assert join_ps51_native("C:\\Windows\\System32\\sc.exe", ["create", "a b", "", 'x"y z"']) == (
        'C:\\Windows\\System32\\sc.exe create "a b" x"y z"'
    )


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
        max_size=40,
    )
)
def test_single_quoted_literal_roundtrip(value: str) -> None:
    quoted = "'" + value.replace("'", "''") + "'"
    tree = parse_script(f"Write-Output {quoted}")
    pipe = tree.statements[0]
    assert isinstance(pipe, Pipeline)
    cmd = pipe.elements[0]
    assert isinstance(cmd, Command)
    arg = cmd.args[0]
    assert isinstance(arg, ValueArg) and isinstance(arg.expr, Literal)
    assert arg.expr.value == value


def test_tar_scanner_streaming_in_small_chunks() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, data in {"a/" + "x" * 150: b"1" * 1000, "b.txt": b""}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    scanner = TarScanner(keep_limit=100)
    for i in range(0, len(raw), 7):
        scanner.feed(raw[i : i + 7])
    members = scanner.finish()
    assert [(m.name, m.size, m.data is None) for m in members] == [
        ("a/" + "x" * 150, 1000, True),
        ("b.txt", 0, False),
    ]
    truncated = TarScanner()
    truncated.feed(raw[: len(raw) // 2])
    with pytest.raises(TarError):
        truncated.finish()


def test_disk_paths_and_errors() -> None:
    disk = VirtualDisk()
    disk.mkdir("C:\\K\\Sub")
    disk.write_file("c:/k/sub/File.TXT", b"x")
    assert disk.read_file("/C:/K/SUB/file.txt") == b"x"
    assert disk.format(disk.canonical(disk.parse("c:\\k\\sub\\file.txt"))) == "C:\\K\\Sub\\File.TXT"
    assert disk.parse("C:\\k\\..\\k\\.\\x") == ("k", "x")
    with pytest.raises(DiskError):
        disk.parse("D:\\x")
    with pytest.raises(DiskError):
        disk.parse("C:\\a|b")
    with pytest.raises(DiskError) as info:
        disk.write_file("C:\\nope\\x", b"")
    assert info.value.kind == "pathnotfound"
    with pytest.raises(DiskError) as info:
        disk.remove("C:\\K")
    assert info.value.kind == "notempty"
    disk.remove("C:\\K", recursive=True)
    assert disk.used == 0
