"""Locating the control-plane binaries: the build cache by version, or KUBEBUILDER_ASSETS."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from wmco_sandbox import controlplane

BUILD = controlplane.project_root() / "hack" / "controlplane" / "build.sh"


def fake_assets(folder: Path, names: tuple[str, ...] = controlplane.BINARIES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        binary = folder / name
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    return folder


def test_versions_are_the_pinned_kubernetes_and_etcd() -> None:
    kube, etcd = controlplane.versions()
    assert kube.startswith("v1.37.")
    assert etcd.startswith("v3.6.")


def test_cache_is_keyed_by_both_versions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WMCO_CACHE_DIR", str(tmp_path))
    kube, etcd = controlplane.versions()
    assert (
        controlplane.cache_bin_dir()
        == tmp_path / "controlplane" / f"kubernetes-{kube}_etcd-{etcd}" / "bin"
    )


def test_kubebuilder_assets_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assets = fake_assets(tmp_path / "assets")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert controlplane.find_binaries() == assets


def test_missing_binaries_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assets = fake_assets(tmp_path / "assets", ("etcd", "kubectl"))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    with pytest.raises(controlplane.ControlPlaneError) as err:
        controlplane.find_binaries()
    message = str(err.value)
    assert (
        "kube-apiserver" in message
        and "kube-scheduler" in message
        and "make controlplane" in message
    )
    assert "etcd," not in message


def test_build_script_uses_kubebuilder_assets_without_building(tmp_path: Path) -> None:
    assets = fake_assets(tmp_path / "assets")
    env = {
        **os.environ,
        "KUBEBUILDER_ASSETS": str(assets),
        "WMCO_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run([str(BUILD)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(assets)
    assert not (tmp_path / "cache").exists()


def test_build_script_refuses_incomplete_kubebuilder_assets(tmp_path: Path) -> None:
    assets = fake_assets(tmp_path / "assets", ("etcd",))
    env = {**os.environ, "KUBEBUILDER_ASSETS": str(assets)}
    result = subprocess.run([str(BUILD)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "kube-apiserver" in result.stderr


def test_build_script_skips_what_is_already_built(tmp_path: Path) -> None:
    kube, etcd = controlplane.versions()
    fake_assets(tmp_path / "controlplane" / f"kubernetes-{kube}_etcd-{etcd}" / "bin")
    env = {k: v for k, v in os.environ.items() if k != "KUBEBUILDER_ASSETS"}
    env["WMCO_CACHE_DIR"] = str(tmp_path)
    result = subprocess.run([str(BUILD)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("already built") == len(controlplane.BINARIES)
