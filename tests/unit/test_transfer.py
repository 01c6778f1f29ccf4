"""Comparing files by hash, and a hash the host never answered."""

from __future__ import annotations

import pathlib

import pytest

from wmco.nodeconfig import hostfiles
from wmco.payload import manifest
from wmco.windows import commands, ssh, sshfailures, transfer


class DroppedHost:
    """A host whose connection drops before any command answers."""

    address = "10.0.0.5"

    def __init__(self) -> None:
        self.commands: list[str] = []

    async def run(
        self, command: str, *, timeout: float | None = None, what: str = "command"
    ) -> ssh.Result:
        self.commands.append(command)
        return ssh.Result(None, "", "")


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
    host = DroppedHost()
    with pytest.raises(sshfailures.TransferError, match="no answer"):
        await transfer.remote_sha256(host, "C:\\k\\kubelet.exe")
    assert host.commands == [commands.file_hash("C:\\k\\kubelet.exe")]


def test_parent_directory() -> None:
    assert transfer.parent_directory("C:\\k\\cni\\host-local.exe") == "C:\\k\\cni"
