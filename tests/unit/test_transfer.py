"""Hash-skipping file transfer, against a fake host that answers the contract's commands."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import re

import pytest

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

    async def run(
        self, command: str, *, timeout: float | None = None, what: str = "command"
    ) -> ssh.Result:
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
        assert transfer.parent_directory(destination) in self.directories
        self.uploads.append(destination)
        data = await asyncio.to_thread(source.read_bytes)
        self.files[destination] = data[:-1] if self.corrupt_uploads else data


async def test_copies_missing_files_then_skips_identical_ones(tmp_path: pathlib.Path) -> None:
    payload = manifest.generate_test_payload(tmp_path)
    host = FakeHost()
    first = await transfer.ensure_files(host, payload.files)
    assert len(first.copied) == len(payload.files) and first.skipped == ()
    assert "C:\\k\\containerd" in host.directories
    second = await transfer.ensure_files(host, payload.files)
    assert second.copied == () and len(second.skipped) == len(payload.files)
    assert len(host.uploads) == len(payload.files)


async def test_changed_file_is_copied_again(tmp_path: pathlib.Path) -> None:
    payload = manifest.generate_test_payload(tmp_path)
    host = FakeHost()
    await transfer.ensure_files(host, payload.files)
    host.files["C:\\k\\kubelet.exe"] = b"old version"
    report = await transfer.ensure_files(host, payload.files)
    assert report.copied == ("C:\\k\\kubelet.exe",)


async def test_bad_upload_is_detected(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "x.exe"
    source.write_bytes(b"content")
    item = transfer.FileToSend(source, "C:\\k\\x.exe", hashlib.sha256(b"content").hexdigest())
    with pytest.raises(transfer.TransferVerificationError, match=re.escape("C:\\k\\x.exe")):
        await transfer.ensure_file(FakeHost(corrupt_uploads=True), item)


def test_parent_directory() -> None:
    assert transfer.parent_directory("C:\\k\\cni\\host-local.exe") == "C:\\k\\cni"
