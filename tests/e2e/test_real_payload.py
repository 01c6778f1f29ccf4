"""A host configured with the real Windows payload: the operator copies the binaries ``make
payload`` built, the simulated host receives exactly those bytes, and the programs they are run as
what they are (kubelet v1.37.2, containerd v2.2.9) while the node becomes Ready.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lightkube.resources.core_v1 import Node

from wmco import names
from wmco.payload import manifest as payload_manifest
from wmco_sandbox.sandbox import Sandbox
from wmco_sandbox.winhost.core.disk import FileNode

pytestmark = [pytest.mark.e2e, pytest.mark.payload, pytest.mark.slow]

CONTAINERD_LOG = "C:\\var\\log\\containerd\\containerd.log"


def ready(node: Node) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


@pytest.mark.timeout(900)
async def test_a_host_configured_with_the_real_payload_gets_its_bytes_and_becomes_ready(
    tmp_path: Path, real_payload: payload_manifest.Manifest
) -> None:
    async with Sandbox(tmp_path / "sandbox", payload_dir=real_payload.directory) as sandbox:
        (listed,) = await sandbox.add_listed_hosts(1)
        hostname = listed.host.facts.hostname

        async def configured() -> bool:
            nodes = [n for n in await sandbox.windows_nodes() if n.metadata]
            node = next((n for n in nodes if n.metadata.name == hostname), None)  # type: ignore[union-attr]
            annotations = (node.metadata.annotations if node and node.metadata else None) or {}
            return node is not None and ready(node) and names.VERSION_ANNOTATION in annotations

        await sandbox.wait_for(configured, "the host with the real payload to be a Ready node", 600)

        disk = listed.host.machine.disk
        for item in real_payload.files:
            received = disk.get(item.destination)
            assert isinstance(received, FileNode), item.destination
            assert received.data is None, f"{item.name}: a big file is kept as size and digest"
            assert (received.size, received.sha256().hex()) == (item.size, item.sha256), item.name

        node = await sandbox.kube.get(Node, hostname)
        assert node.metadata is not None and node.status is not None
        assert node.status.nodeInfo is not None
        annotations = node.metadata.annotations or {}
        assert annotations[names.VERSION_ANNOTATION].endswith(f"+payload.{real_payload.version}")
        assert node.status.nodeInfo.kubeletVersion == real_payload.by_name("kubelet.exe").version
        containerd_version = real_payload.by_name("containerd/containerd.exe").version
        assert node.status.nodeInfo.containerRuntimeVersion == (
            f"containerd://{containerd_version.lstrip('v')}"
        )
        log = (disk.read_file(CONTAINERD_LOG) or b"").decode()
        assert f'msg="starting containerd" revision="" version="{containerd_version}"' in log
