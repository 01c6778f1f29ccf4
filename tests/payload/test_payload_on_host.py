"""The real binaries on a simulated host's disk: kept as size and digest only (sink mode), yet
the programs still know which release they are, as the real ones do."""

from __future__ import annotations

import pytest

from wmco.payload import manifest as payload_manifest
from wmco_sandbox.winhost.core import gobuildinfo
from wmco_sandbox.winhost.core.disk import VirtualDisk

pytestmark = pytest.mark.payload

SINK_THRESHOLD = 64 * 1024  # what the sandbox's cloud gives its hosts
CHUNK = 32 * 1024  # an SFTP write request of asyncssh's size


def test_every_binary_streamed_onto_a_sink_disk_keeps_its_digest_and_build_information(
    real_payload: payload_manifest.Manifest,
) -> None:
    disk = VirtualDisk(sink_threshold=SINK_THRESHOLD)
    for directory in real_payload.destination_directories:
        disk.mkdir(directory)
    for item in real_payload.files:
        writer = disk.open_writer(item.destination, truncate=True, create=True, exclusive=False)
        offset = 0
        with item.source.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                writer.write(offset, chunk)
                offset += len(chunk)
        writer.close()
        node = disk.get(item.destination)
        assert node is not None and disk.read_file(item.destination) is None, item.name
        assert (node.size, node.sha256().hex()) == (item.size, item.sha256), item.name  # type: ignore[union-attr]
        assert disk.build_info(item.destination) == gobuildinfo.parse(item.source.read_bytes())
    kubelet = disk.build_info("C:\\k\\kubelet.exe")
    containerd = disk.build_info("C:\\k\\containerd\\containerd.exe")
    assert kubelet is not None and containerd is not None
    assert kubelet.path == "k8s.io/kubernetes/cmd/kubelet"
    assert kubelet.module("k8s.io/kubernetes") == kubelet.package_module()
    assert kubelet.package_module().version == real_payload.by_name("kubelet.exe").version  # type: ignore[union-attr]
    module = containerd.module("github.com/containerd/containerd/v2")
    assert module is not None
    assert module.version == real_payload.by_name("containerd/containerd.exe").version == "v2.2.9"
    assert disk.used == sum(item.size for item in real_payload.files)
