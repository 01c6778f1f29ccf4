"""The real Windows payload ``make payload`` builds: what the operator copies to hosts is what the
manifest says, every file a 64-bit Windows program built from the pinned module versions.

Each check reads the files themselves: the PE headers are parsed here (no library), the module
versions come from ``go version -m`` (Go's own reader of the build information), the digests
from hashing the bytes again.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from wmco.payload import manifest as payload_manifest
from wmco.windows import layout
from wmco_sandbox import controlplane as cp
from wmco_sandbox import payloads
from wmco_sandbox.winhost.core import gobuildinfo

pytestmark = pytest.mark.payload

HACK = cp.project_root() / "hack" / "payload"
IMAGE_FILE_MACHINE_AMD64 = 0x8664
IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002
IMAGE_FILE_LARGE_ADDRESS_AWARE = 0x0020
IMAGE_FILE_DLL = 0x2000
PE32_PLUS = 0x20B
IMAGE_SUBSYSTEM_WINDOWS_CUI = 3


@dataclass(frozen=True)
class PeHeader:
    machine: int
    sections: int
    characteristics: int
    magic: int
    subsystem: int


def pe_header(path: Path) -> PeHeader:
    """The COFF and optional header fields of a PE file (Microsoft PE format, §3-§4)."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    assert head[:2] == b"MZ", f"{path.name}: no MS-DOS header"
    (e_lfanew,) = struct.unpack_from("<I", head, 0x3C)
    assert head[e_lfanew : e_lfanew + 4] == b"PE\0\0", f"{path.name}: no PE signature"
    machine, sections, _, _, _, optional_size, characteristics = struct.unpack_from(
        "<HHIIIHH", head, e_lfanew + 4
    )
    optional = e_lfanew + 24
    assert optional_size >= 112, f"{path.name}: optional header of {optional_size} bytes"
    (magic,) = struct.unpack_from("<H", head, optional)
    (subsystem,) = struct.unpack_from("<H", head, optional + 68)
    return PeHeader(machine, sections, characteristics, magic, subsystem)


def go_version_m(path: Path) -> gobuildinfo.BuildInfo:
    """``go version -m`` of a file, read into the same record the simulator's reader makes."""
    out = subprocess.run(
        ["go", "version", "-m", str(path)], check=True, capture_output=True, text=True
    ).stdout
    first, _, rest = out.partition("\n")
    go_version = first.rsplit(": ", 1)[1].strip()
    lines = "\n".join(line.removeprefix("\t") for line in rest.splitlines())
    package, main, deps, settings = gobuildinfo.parse_modinfo(lines)
    return gobuildinfo.BuildInfo(go_version, package, main, deps, settings)


def stream_build_info(path: Path) -> gobuildinfo.BuildInfo | None:
    scanner = gobuildinfo.BuildInfoScanner()
    with path.open("rb") as handle:
        while not scanner.done and (chunk := handle.read(1 << 20)):
            scanner.feed(chunk)
    return scanner.result


def required(go_mod: Path, module: str) -> str:
    match = re.search(rf"^require {re.escape(module)} (\S+)$", go_mod.read_text(), re.MULTILINE)
    assert match, f"{go_mod} has no single-line requirement of {module}"
    return match.group(1)


def wrappers_requiring(module: str) -> list[Path]:
    """The wrapper modules under hack/payload whose go.mod requires ``module`` directly."""
    pattern = re.compile(rf"^require {re.escape(module)} \S+$", re.MULTILINE)
    return [
        d
        for d in sorted(HACK.iterdir())
        if (d / "go.mod").is_file() and pattern.search((d / "go.mod").read_text())
    ]


def go_sum(wrapper: Path) -> set[tuple[str, str, str]]:
    entries = set()
    for line in (wrapper / "go.sum").read_text().splitlines():
        path, version, digest = line.split()
        if not version.endswith("/go.mod"):
            entries.add((path, version, digest))
    return entries


def test_the_manifest_lists_every_binary_the_operator_runs(
    real_payload: payload_manifest.Manifest,
) -> None:
    expected = {(name, dest) for name, dest, _ in payload_manifest.TEST_PAYLOAD_FILES}
    expected |= set(payload_manifest.REAL_PAYLOAD_ONLY)
    assert {(f.name, f.destination) for f in real_payload.files} == expected
    destinations = {f.destination for f in real_payload.files}
    for path in (
        layout.KUBELET_EXE,
        layout.KUBE_PROXY_EXE,
        layout.KUBE_LOG_RUNNER_EXE,
        layout.WINDOWS_EXPORTER_EXE,
        layout.HYBRID_OVERLAY_EXE,
        layout.CONTAINERD_EXE,
        layout.CONTAINERD_SHIM_EXE,
    ):
        assert path in destinations
    assert real_payload.directory == payloads.cached_dir()
    assert real_payload.version == real_payload.directory.name
    assert real_payload.version.startswith("kubernetes-v1.37.2_containerd-v2.2.9_")


def test_sizes_and_hashes_match_the_manifest(real_payload: payload_manifest.Manifest) -> None:
    document = json.loads((real_payload.directory / payload_manifest.MANIFEST_NAME).read_text())
    assert [sorted(entry) for entry in document["files"]] == [
        ["destination", "name", "sha256", "size", "version"]
    ] * len(real_payload.files)
    for item in real_payload.files:
        data = item.source.read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (item.size, item.sha256), item.name
    assert payload_manifest.verify(real_payload) == []
    assert payload_manifest.load_and_verify(real_payload.directory) == real_payload


def test_every_file_is_a_pe32_plus_x86_64_windows_console_program(
    real_payload: payload_manifest.Manifest,
) -> None:
    for item in real_payload.files:
        header = pe_header(item.source)
        assert header.machine == IMAGE_FILE_MACHINE_AMD64, item.name
        assert header.magic == PE32_PLUS, item.name
        assert header.characteristics & IMAGE_FILE_EXECUTABLE_IMAGE, item.name
        assert header.characteristics & IMAGE_FILE_LARGE_ADDRESS_AWARE, item.name
        assert not header.characteristics & IMAGE_FILE_DLL, item.name
        assert header.subsystem == IMAGE_SUBSYSTEM_WINDOWS_CUI, item.name
        assert header.sections >= 3, item.name


def test_embedded_module_versions_are_the_manifests_and_the_pinned_ones(
    real_payload: payload_manifest.Manifest,
) -> None:
    for item in real_payload.files:
        info = go_version_m(item.source)
        module = info.package_module()
        # `go build <package>` in a wrapper records the package's own module as the main one
        assert module is not None and module is info.main, f"{item.name}: {info.path}"
        assert module.replacement is None, item.name
        assert module.version == item.version, item.name
        (wrapper,) = wrappers_requiring(module.path)
        assert required(wrapper / "go.mod", module.path) == item.version, item.name
        pinned = go_sum(wrapper)
        for dep in (module, *info.deps):
            used = dep.effective
            assert (used.path, used.version, used.sum) in pinned, f"{item.name}: {used}"
        settings = dict(info.settings)
        assert settings["GOOS"] == "windows" and settings["GOARCH"] == "amd64", item.name
        assert settings["CGO_ENABLED"] == "0" and settings["-trimpath"] == "true", item.name


def test_the_simulators_reader_agrees_with_go_version_m(
    real_payload: payload_manifest.Manifest,
) -> None:
    for item in real_payload.files:
        assert stream_build_info(item.source) == go_version_m(item.source), item.name


def test_the_kubelet_is_the_control_planes_kubernetes_with_the_same_staging_replaces() -> None:
    node = (HACK / "kubernetes" / "go.mod").read_text()
    plane = (cp.project_root() / "hack" / "controlplane" / "kube" / "go.mod").read_text()
    assert required(HACK / "kubernetes" / "go.mod", "k8s.io/kubernetes") == cp.versions()[0]

    def replaces(text: str) -> str:
        return text[text.index("replace (") :]

    assert replaces(node) == replaces(plane)
