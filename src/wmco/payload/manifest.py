r"""The payload: a folder of files for Windows hosts, described by ``manifest.json``.

``manifest.json``::

    {
      "version": "kubernetes-v1.37.2_containerd-v2.2.9_...",
      "files": [
        {"name": "kubelet.exe", "destination": "C:\\k\\kubelet.exe",
         "version": "v1.37.2", "size": 97869312, "sha256": "<64 hex>"},
        ...
      ]
    }

``name`` is the file's path relative to the folder (``/`` separated); ``destination`` the absolute
Windows path on the host; ``version`` the version of the module the program was built from;
``size`` the file's length in bytes; ``sha256`` the lower-case digest of its bytes (the host's
``Get-FileHash`` is compared with it, so an unchanged file is never copied twice). The operator
refuses to start with a payload whose files are missing or differ from the manifest in size or
digest.

The real payload is built by ``hack/payload/build.sh`` (``make payload``) into
``~/.cache/wmco/payload/<versions>/``; the container image carries it at ``/payload``.
:func:`generate_test_payload` writes a small fake payload (a few KB per file) for fast unit tests
and the sandbox's ``--payload generated``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

MANIFEST_NAME: Final = "manifest.json"
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_WINDOWS_ABSOLUTE: Final = re.compile(r"[A-Za-z]:\\[^\r\n\0\"]*")


class PayloadError(ValueError):
    """The payload cannot be used; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True, slots=True)
class PayloadFile:
    """One file of the payload.

    Attributes:
        name: Path relative to the payload folder, ``/`` separated.
        destination: Absolute Windows path on the host.
        sha256: Lower-case hex digest of the content.
        version: The component's version (the module it was built from).
        size: Length of the content in bytes.
        source: Absolute local path of the file.
    """

    name: str
    destination: str
    sha256: str
    version: str
    size: int
    source: pathlib.Path


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """A loaded payload.

    Attributes:
        directory: The payload folder.
        version: The payload's version.
        files: The files, in manifest order.
    """

    directory: pathlib.Path
    version: str
    files: tuple[PayloadFile, ...]

    def by_name(self, name: str) -> PayloadFile:
        """The file called ``name``.

        Raises:
            KeyError: No such file in the manifest.
        """
        for item in self.files:
            if item.name == name:
                return item
        raise KeyError(name)

    @property
    def destination_directories(self) -> tuple[str, ...]:
        """Every Windows directory a file goes to, sorted, each once."""
        return tuple(sorted({item.destination.rsplit("\\", 1)[0] for item in self.files}))


def sha256_file(path: pathlib.Path) -> str:
    """Lower-case hex SHA-256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_name(name: object, index: int) -> str:
    if not isinstance(name, str) or not name:
        raise PayloadError(f"manifest file #{index}: 'name' must be a non-empty string")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts):
        raise PayloadError(
            f"manifest file {name!r}: 'name' must be a relative path inside the folder"
        )
    return name


def _entry(directory: pathlib.Path, raw: Any, index: int) -> PayloadFile:
    if not isinstance(raw, dict):
        raise PayloadError(f"manifest file #{index}: expected an object")
    name = _check_name(raw.get("name"), index)
    destination = raw.get("destination")
    if not isinstance(destination, str) or not _WINDOWS_ABSOLUTE.fullmatch(destination):
        raise PayloadError(
            f"manifest file {name!r}: 'destination' must be an absolute Windows path (C:\\...)"
        )
    if destination.endswith("\\"):
        raise PayloadError(f"manifest file {name!r}: 'destination' must name a file")
    sha256 = raw.get("sha256")
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256.lower()):
        raise PayloadError(f"manifest file {name!r}: 'sha256' must be 64 hex digits")
    version = raw.get("version", "")
    if not isinstance(version, str):
        raise PayloadError(f"manifest file {name!r}: 'version' must be a string")
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise PayloadError(f"manifest file {name!r}: 'size' must be a byte count (an integer >= 0)")
    return PayloadFile(
        name=name,
        destination=destination,
        sha256=sha256.lower(),
        version=version,
        size=size,
        source=directory.joinpath(*name.split("/")),
    )


def load_manifest(directory: pathlib.Path) -> Manifest:
    """Read and validate ``<directory>/manifest.json`` (not the files; see :func:`verify`).

    Raises:
        PayloadError: Missing or malformed manifest, bad entries, duplicate names or destinations.
    """
    path = directory / MANIFEST_NAME
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PayloadError(f"payload folder {directory} has no {MANIFEST_NAME}") from None
    except (OSError, ValueError) as exc:
        raise PayloadError(f"{path} cannot be read as JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("files"), list):
        raise PayloadError(f"{path}: expected an object with a 'files' list")
    version = document.get("version", "")
    if not isinstance(version, str):
        raise PayloadError(f"{path}: 'version' must be a string")
    files = tuple(_entry(directory, raw, index) for index, raw in enumerate(document["files"]))
    seen_names: set[str] = set()
    seen_destinations: set[str] = set()
    for item in files:
        if item.name in seen_names:
            raise PayloadError(f"manifest file {item.name!r} is listed twice")
        if item.destination.lower() in seen_destinations:
            raise PayloadError(f"destination {item.destination!r} is used twice")
        seen_names.add(item.name)
        seen_destinations.add(item.destination.lower())
    return Manifest(directory=directory, version=version, files=files)


def verify(manifest: Manifest) -> list[str]:
    """Check every file exists and matches its size and digest.

    Returns:
        One message per problem (missing file, size or digest mismatch); empty when the payload
        is sound.
    """
    problems: list[str] = []
    for item in manifest.files:
        if not item.source.is_file():
            problems.append(f"payload file {item.name!r} is missing ({item.source})")
            continue
        size = item.source.stat().st_size
        if size != item.size:
            problems.append(
                f"payload file {item.name!r} has {size} bytes, manifest says {item.size}"
            )
            continue
        actual = sha256_file(item.source)
        if actual != item.sha256:
            problems.append(
                f"payload file {item.name!r} has sha256 {actual}, manifest says {item.sha256}"
            )
    return problems


def load_and_verify(directory: pathlib.Path) -> Manifest:
    """:func:`load_manifest` then :func:`verify`.

    Raises:
        PayloadError: The manifest is invalid or any file is missing or different.
    """
    manifest = load_manifest(directory)
    problems = verify(manifest)
    if problems:
        raise PayloadError("; ".join(problems))
    return manifest


def write_manifest(
    directory: pathlib.Path, entries: Iterable[tuple[str, str, str]], *, version: str
) -> Manifest:
    """Write ``manifest.json`` for files already in ``directory``, computing sizes and digests.

    Args:
        directory: The payload folder.
        entries: ``(name, destination, component version)`` per file.
        version: The payload version.

    Returns:
        The loaded manifest.
    """
    files: list[dict[str, str | int]] = []
    for name, destination, file_version in entries:
        source = directory.joinpath(*name.split("/"))
        files.append(
            {
                "name": name,
                "destination": destination,
                "version": file_version,
                "size": source.stat().st_size,
                "sha256": sha256_file(source),
            }
        )
    document = {"version": version, "files": files}
    (directory / MANIFEST_NAME).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return load_manifest(directory)


TEST_PAYLOAD_FILES: Final[Sequence[tuple[str, str, str]]] = (
    ("kubelet.exe", "C:\\k\\kubelet.exe", "v1.36.2"),
    ("kube-proxy.exe", "C:\\k\\kube-proxy.exe", "v1.36.2"),
    ("kube-log-runner.exe", "C:\\k\\kube-log-runner.exe", "v1.36.2"),
    ("windows_exporter.exe", "C:\\k\\windows_exporter.exe", "v0.30.5"),
    ("hybrid-overlay-node.exe", "C:\\k\\hybrid-overlay-node.exe", "v0.0.0-test"),
    ("containerd/containerd.exe", "C:\\k\\containerd\\containerd.exe", "v1.7.27"),
    (
        "containerd/containerd-shim-runhcs-v1.exe",
        "C:\\k\\containerd\\containerd-shim-runhcs-v1.exe",
        "v0.12.0",
    ),
    ("cni/win-bridge.exe", "C:\\k\\cni\\win-bridge.exe", "v1.5.1"),
    ("cni/win-overlay.exe", "C:\\k\\cni\\win-overlay.exe", "v1.5.1"),
    ("cni/host-local.exe", "C:\\k\\cni\\host-local.exe", "v1.5.1"),
)
"""The files of the generated test payload: ``(name, destination, component version)``.

The real payload (``hack/payload/build.sh``) has the same names and destinations plus
``csi-proxy.exe`` (:data:`REAL_PAYLOAD_ONLY`), with the versions it pins. Binaries only: the configuration files (containerd's among them) are generated by the operator
for each node (``wmco.windows.configfiles``)."""


REAL_PAYLOAD_ONLY: Final[Sequence[tuple[str, str]]] = (("csi-proxy.exe", "C:\\k\\csi-proxy.exe"),)
"""``(name, destination)`` of the real payload's files the generated one does not fake."""


def fake_binary(name: str, version: str, size: int) -> bytes:
    """Deterministic stand-in content for a binary: a readable header, then filler bytes.

    The header (``WMCO-FAKE-BINARY <name> <version>``) lets the simulated host tell which program
    a file is; the filler makes the size realistic for transfer tests.
    """
    header = f"MZ WMCO-FAKE-BINARY {name} {version}\n".encode("ascii")
    seed = hashlib.sha256(header).digest()
    filler = bytearray()
    counter = 0
    while len(header) + len(filler) < size:
        filler += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return (header + bytes(filler))[: max(size, len(header))]


def generate_test_payload(
    directory: pathlib.Path, *, version: str = "0.0.0-test", size: int = 4096
) -> Manifest:
    """Write a small fake payload (the files of :data:`TEST_PAYLOAD_FILES`) and its manifest.

    Args:
        directory: Folder to write into (created if missing).
        version: Payload version recorded in the manifest (also mixed into the fake contents, so
            two versions differ in every file).
        size: Approximate size of each fake binary, in bytes.

    Returns:
        The loaded manifest.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, _, file_version in TEST_PAYLOAD_FILES:
        target = directory.joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        basename = name.rsplit("/", 1)[-1]
        target.write_bytes(fake_binary(basename, f"{file_version}+{version}", size))
    return write_manifest(directory, TEST_PAYLOAD_FILES, version=version)
