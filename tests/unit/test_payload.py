"""The payload manifest: loading, validation, verification, and the generated test payload."""

from __future__ import annotations

import json
import pathlib

import pytest

from wmco.payload import manifest


def test_generated_payload_is_complete_and_verifies(tmp_path: pathlib.Path) -> None:
    loaded = manifest.generate_test_payload(tmp_path, version="1.2.3", size=3000)
    assert loaded.version == "1.2.3"
    assert {f.name for f in loaded.files} >= {
        "kubelet.exe",
        "kube-proxy.exe",
        "containerd/containerd.exe",
        "windows_exporter.exe",
    }
    assert manifest.verify(loaded) == []
    kubelet = loaded.by_name("kubelet.exe")
    assert kubelet.destination == "C:\\k\\kubelet.exe"
    assert kubelet.source == tmp_path / "kubelet.exe"
    assert 2900 <= kubelet.source.stat().st_size <= 3000
    assert kubelet.size == kubelet.source.stat().st_size
    document = json.loads((tmp_path / manifest.MANIFEST_NAME).read_text())
    assert document["files"][0] == {
        "name": "kubelet.exe",
        "destination": "C:\\k\\kubelet.exe",
        "version": "v1.36.2",
        "size": kubelet.size,
        "sha256": kubelet.sha256,
    }
    assert kubelet.source.read_bytes().startswith(b"MZ WMCO-FAKE-BINARY kubelet.exe v1.36.2")
    assert manifest.load_and_verify(tmp_path) == loaded
    assert "C:\\k\\containerd" in loaded.destination_directories


def test_generation_is_deterministic_and_versions_differ(tmp_path: pathlib.Path) -> None:
    a = manifest.generate_test_payload(tmp_path / "a", version="1")
    b = manifest.generate_test_payload(tmp_path / "b", version="1")
    c = manifest.generate_test_payload(tmp_path / "c", version="2")
    assert [f.sha256 for f in a.files] == [f.sha256 for f in b.files]
    assert a.by_name("kubelet.exe").sha256 != c.by_name("kubelet.exe").sha256


def test_verify_reports_missing_resized_and_changed_files(tmp_path: pathlib.Path) -> None:
    loaded = manifest.generate_test_payload(tmp_path)
    kubelet = tmp_path / "kubelet.exe"
    kubelet.write_bytes(b"tampered")
    same_size = tmp_path / "windows_exporter.exe"
    same_size.write_bytes(b"X" * same_size.stat().st_size)
    (tmp_path / "kube-proxy.exe").unlink()
    problems = manifest.verify(loaded)
    assert len(problems) == 3
    assert (
        f"payload file 'kubelet.exe' has 8 bytes, manifest says {loaded.by_name('kubelet.exe').size}"
        in problems
    )
    assert any("windows_exporter.exe" in p and "sha256" in p for p in problems)
    assert any("kube-proxy.exe" in p and "missing" in p for p in problems)
    with pytest.raises(manifest.PayloadError, match=r"kube-proxy\.exe"):
        manifest.load_and_verify(tmp_path)


def write(tmp_path: pathlib.Path, document: object) -> None:
    (tmp_path / manifest.MANIFEST_NAME).write_text(json.dumps(document))


GOOD = {
    "name": "a.exe",
    "destination": "C:\\k\\a.exe",
    "sha256": "a" * 64,
    "version": "1",
    "size": 10,
}


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({**GOOD, "name": "../a.exe"}, "relative path"),
        ({**GOOD, "name": "/etc/passwd"}, "relative path"),
        ({**GOOD, "name": "a\\b.exe"}, "relative path"),
        ({**GOOD, "destination": "k\\a.exe"}, "absolute Windows path"),
        ({**GOOD, "destination": "C:\\k\\a\n.exe"}, "absolute Windows path"),
        ({**GOOD, "destination": "C:\\k\\"}, "name a file"),
        ({**GOOD, "sha256": "xyz"}, "64 hex"),
        ({**GOOD, "version": 3}, "version"),
        ({k: v for k, v in GOOD.items() if k != "size"}, "'size' must be a byte count"),
        ({**GOOD, "size": -1}, "'size' must be a byte count"),
        ({**GOOD, "size": "10"}, "'size' must be a byte count"),
        ({**GOOD, "size": True}, "'size' must be a byte count"),
    ],
)
def test_bad_entries_are_refused(
    tmp_path: pathlib.Path, entry: dict[str, object], fragment: str
) -> None:
    write(tmp_path, {"version": "1", "files": [entry]})
    with pytest.raises(manifest.PayloadError, match=fragment):
        manifest.load_manifest(tmp_path)


def test_duplicates_are_refused(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"files": [GOOD, GOOD]})
    with pytest.raises(manifest.PayloadError, match="twice"):
        manifest.load_manifest(tmp_path)
    other = {**GOOD, "name": "b.exe", "destination": "c:\\K\\A.EXE"}
    write(tmp_path, {"files": [GOOD, other]})
    with pytest.raises(manifest.PayloadError, match="twice"):
        manifest.load_manifest(tmp_path)


def test_missing_or_malformed_manifest(tmp_path: pathlib.Path) -> None:
    with pytest.raises(manifest.PayloadError, match=r"no manifest\.json"):
        manifest.load_manifest(tmp_path)
    (tmp_path / manifest.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(manifest.PayloadError, match="JSON"):
        manifest.load_manifest(tmp_path)
    write(tmp_path, {"version": "1"})
    with pytest.raises(manifest.PayloadError, match="files"):
        manifest.load_manifest(tmp_path)


def test_by_name_unknown_raises_key_error(tmp_path: pathlib.Path) -> None:
    loaded = manifest.generate_test_payload(tmp_path)
    with pytest.raises(KeyError):
        loaded.by_name("nope.exe")
