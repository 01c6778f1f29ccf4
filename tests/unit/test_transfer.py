"""Comparing and writing files by hash, against a fake host that answers the contract's commands."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib

import pytest

from wmco.nodeconfig import hostfiles
from wmco.payload import manifest
from wmco.windows import commands, ssh, transfer


class FakeHost:
    """Keeps files in a dict and answers the exact command strings transfer sends."""

    address = "10.0.0.5"

    def __init__(self, corrupt_uploads: bool = False) -> None:
        self.files: dict[str, bytes] = {}
        self.directories: set[str] = set()
        self.uploads: list[str] = []
        self.corrupt_uploads = corrupt_uploads
        self.drop_next_hash = False

    async def run(
        self, command: str, *, timeout: float | None = None, what: str = "command"
    ) -> ssh.Result:
        if command.startswith("(Get-FileHash") and self.drop_next_hash:
            self.drop_next_hash = False
            return ssh.Result(None, "", "")
        for path, data in self.files.items():
            if command == commands.file_hash(path):
                return ssh.Result(0, hashlib.sha256(data).hexdigest().upper() + "\r\n", "")
        if command.startswith("(Get-FileHash"):
            return ssh.Result(1, "", "Get-FileHash : Cannot find path\n")
        if command.startswith("New-Item -ItemType Directory"):
            self.directories.add(command.split("'")[1])
            return ssh.Result(0, "", "")
        raise AssertionError(f"unexpected command {command}")

    async def put_file(self, source: pathlib.Path, destination: str) -> None:
        data = await asyncio.to_thread(source.read_bytes)
        await self.put_bytes(data, destination)

    async def put_bytes(self, data: bytes, destination: str, *, what: str = "file") -> None:
        assert transfer.parent_directory(destination) in self.directories
        self.uploads.append(destination)
        self.files[destination] = data[:-1] if self.corrupt_uploads else data


def test_missing_files_and_changed_files_differ_and_identical_ones_do_not(
    tmp_path: pathlib.Path,
) -> None:
    payload = manifest.generate_test_payload(tmp_path)
    items = hostfiles.payload_files(payload)
    assert transfer.differing_in(items, {}) == items
    hashes = {item.destination.lower(): item.sha256 for item in items}
    assert transfer.differing_in(items, hashes) == ()
    hashes["c:\\k\\kubelet.exe"] = "0" * 64
    assert [i.destination for i in transfer.differing_in(items, hashes)] == ["C:\\k\\kubelet.exe"]
    generated = transfer.Content.of_bytes("C:\\k\\kubelet-ca.crt", b"PEM", "kubelet client CA")
    assert "PEM" not in repr(generated)


async def test_a_dropped_hash_is_not_mistaken_for_a_missing_file(tmp_path: pathlib.Path) -> None:
    host = FakeHost()
    host.drop_next_hash = True
    with pytest.raises(ssh.TransferError, match="no answer"):
        await transfer.remote_sha256(host, "C:\\k\\kubelet.exe")


def test_parent_directory() -> None:
    assert transfer.parent_directory("C:\\k\\cni\\host-local.exe") == "C:\\k\\cni"
