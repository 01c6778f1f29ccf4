"""Go build information read from an executable's bytes, whole or while it streams onto a disk
that keeps only the digest of big files, and the programs that know their release from it."""

from __future__ import annotations

import hashlib

import pytest

from containerd_helpers import CONF, LOG_FILE, new_machine, start_containerd
from gobinary_helpers import go_binary, modinfo
from wmco_sandbox.winhost.core import gobuildinfo
from wmco_sandbox.winhost.core.disk import VirtualDisk

CONTAINERD_INFO = modinfo(
    "github.com/containerd/containerd/v2/cmd/containerd",
    ("github.com/containerd/containerd/v2", "v2.2.9"),
    [
        ("github.com/Microsoft/hcsshim", "v0.14.0"),
        ("github.com/containerd/containerd/api", "v1.10.0"),
        ("golang.org/x/sys", "v0.40.0"),
    ],
    replaced="golang.org/x/sys",
)


@pytest.mark.parametrize("chunk", [5, 4096, 1 << 20])
def test_the_scanner_finds_the_same_block_in_chunks_of_any_size(chunk: int) -> None:
    data = go_binary(CONTAINERD_INFO)
    scanner = gobuildinfo.BuildInfoScanner()
    for offset in range(0, len(data), chunk):
        scanner.feed(data[offset : offset + chunk])
    assert scanner.done
    assert scanner.result == gobuildinfo.parse(data)
    info = scanner.result
    assert info is not None
    assert info.go_version == "go1.26.8"
    assert info.path == "github.com/containerd/containerd/v2/cmd/containerd"
    assert info.main == gobuildinfo.Module(
        "github.com/containerd/containerd/v2", "v2.2.9", f"h1:{'M' * 43}="
    )
    assert [d.path for d in info.deps] == [
        "github.com/Microsoft/hcsshim",
        "github.com/containerd/containerd/api",
        "golang.org/x/sys",
    ]
    assert info.package_module() is info.main  # the longest prefix, not .../containerd/api
    sys_module = info.module("golang.org/x/sys")
    assert sys_module is not None and sys_module.effective.version == "v0.40.0-replaced"
    assert info.setting("GOOS") == "windows"


def test_unaligned_and_malformed_magics_are_skipped_and_files_without_one_have_none() -> None:
    data = go_binary(CONTAINERD_INFO, decoys=True)
    assert data.count(gobuildinfo.MAGIC) == 3
    info = gobuildinfo.parse(data)
    assert info is not None and info.path.endswith("/cmd/containerd")
    assert gobuildinfo.parse(b"MZ" + b"\0" * 100_000) is None
    cut = data[: data.index(gobuildinfo.MAGIC, 90_000) + 40]
    assert gobuildinfo.parse(cut) is None


def test_a_sunk_executable_keeps_its_build_information_and_a_kept_one_is_read_on_demand() -> None:
    disk = VirtualDisk(sink_threshold=64 * 1024)
    disk.mkdir("C:\\k")
    data = go_binary(CONTAINERD_INFO, size=300_000)
    writer = disk.open_writer("C:\\k\\big.exe", truncate=True, create=True, exclusive=False)
    for offset in range(0, len(data), 16 * 1024):
        writer.write(offset, data[offset : offset + 16 * 1024])
    writer.close()
    assert disk.read_file("C:\\k\\big.exe") is None  # sunk: no bytes kept
    node = disk.get("C:\\k\\big.exe")
    assert node is not None and node.sha256() == hashlib.sha256(data).digest()  # type: ignore[union-attr]
    assert disk.build_info("C:\\k\\big.exe") == gobuildinfo.parse(data)

    disk.write_file("C:\\k\\whole.exe", data)  # one write, also sunk
    assert disk.build_info("C:\\k\\whole.exe") == gobuildinfo.parse(data)
    small = VirtualDisk()
    small.mkdir("C:\\k")
    small.write_file("C:\\k\\kept.exe", data)
    assert small.read_file("C:\\k\\kept.exe") == data
    assert small.build_info("C:\\k\\kept.exe") == gobuildinfo.parse(data)

    writer = disk.open_writer("C:\\k\\big.exe", truncate=True, create=False, exclusive=False)
    writer.write(0, b"MZ not a Go program")
    writer.close()
    assert disk.build_info("C:\\k\\big.exe") is None


async def test_containerd_runs_as_the_release_its_real_binary_was_built_from() -> None:
    host = new_machine(containerd_version=None)
    host.disk.sink_threshold = 64 * 1024
    host.disk.write_file("C:\\k\\containerd\\containerd.exe", go_binary(CONTAINERD_INFO))
    assert host.disk.read_file("C:\\k\\containerd\\containerd.exe") is None
    await start_containerd(host)
    log = (host.disk.read_file(LOG_FILE) or b"").decode()
    assert 'msg="starting containerd" revision="" version="v2.2.9"' in log
    # 2.x takes the operator's version 2 file and migrates it, as 1.7 would not need to
    assert "Configuration migrated from version 2" in log
    assert host.disk.read_file(CONF) is not None
