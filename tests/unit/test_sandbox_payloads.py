"""Which payload the sandbox uses: the real one when it is built (or asked for), else generated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wmco.payload import manifest as payload_manifest
from wmco_sandbox import controlplane as cp
from wmco_sandbox import payloads


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WMCO_CACHE_DIR", str(tmp_path))
    return tmp_path


def pinned(wrapper: str, module: str) -> str:
    go_mod = (cp.project_root() / "hack" / "payload" / wrapper / "go.mod").read_text()
    match = re.search(rf"^require {re.escape(module)} (\S+)$", go_mod, re.MULTILINE)
    assert match
    return match.group(1)


def test_the_cache_folder_is_keyed_by_the_pinned_versions(cache: Path) -> None:
    directory = payloads.cached_dir()
    assert directory.parent == cache / "payload"
    for part in (
        f"kubernetes-{pinned('kubernetes', 'k8s.io/kubernetes')}",
        f"containerd-{pinned('containerd', 'github.com/containerd/containerd/v2')}",
        f"hcsshim-{pinned('hcsshim', 'github.com/Microsoft/hcsshim')}",
        f"cni-{pinned('cni-plugins', 'github.com/containernetworking/plugins')}",
        f"windows_exporter-{pinned('windows_exporter', 'github.com/prometheus-community/windows_exporter')}",
        f"csi-proxy-{pinned('csi-proxy', 'github.com/kubernetes-csi/csi-proxy')}",
    ):
        assert part in directory.name
    ovn = pinned("ovn-kubernetes", "github.com/ovn-kubernetes/ovn-kubernetes/go-controller")
    assert directory.name.endswith(f"_ovn-{ovn.rsplit('-', 1)[1]}")
    assert not directory.exists()  # --dir only names it


def test_auto_takes_the_generated_payload_and_says_how_to_build_the_real_one(cache: Path) -> None:
    resolved = payloads.resolve(payloads.Choice.AUTO)
    assert (resolved.kind, resolved.directory) == (payloads.Choice.GENERATED, None)
    assert "the real payload is not built yet" in resolved.reason
    assert "`make payload`" in resolved.reason


def test_a_built_payload_is_used_by_auto_and_real_but_not_by_generated(cache: Path) -> None:
    directory = payloads.cached_dir()
    payload_manifest.generate_test_payload(directory)
    for choice in (payloads.Choice.AUTO, payloads.Choice.REAL):
        resolved = payloads.resolve(choice)
        assert (resolved.kind, resolved.directory) == (payloads.Choice.REAL, directory)
        assert resolved.reason == f"real (the binaries in {directory})"
    assert payloads.resolve(payloads.Choice.GENERATED).directory is None


def test_a_folder_missing_a_listed_file_is_not_built(cache: Path) -> None:
    directory = payloads.cached_dir()
    payload_manifest.generate_test_payload(directory)
    (directory / "kubelet.exe").unlink()
    assert not payloads.is_built(directory)
    assert payloads.resolve(payloads.Choice.AUTO).kind is payloads.Choice.GENERATED
