"""Which payload the sandbox's operator copies to its hosts: the real binaries, or generated fakes.

The real payload is what users get: the Windows binaries ``hack/payload/build.sh`` (``make
payload``) cross-compiles from the Go module proxy into ``~/.cache/wmco/payload/<versions>/``.
The generated one (:func:`wmco.payload.manifest.generate_test_payload`) is a few KB per file and
needs nothing built. ``auto`` takes the real payload when it is built and the generated one
otherwise, and says which: a cold build takes about ten minutes on two cores, which a first
``make demo`` on a fresh machine should not pay silently (``make payload`` once, and every demo
after that runs the real binaries).
"""

from __future__ import annotations

import dataclasses
import enum
import subprocess
from pathlib import Path

from wmco.payload import manifest as payload_manifest
from wmco_sandbox import controlplane as cp

__all__ = ["Choice", "PayloadError", "Resolved", "build", "build_script", "cached_dir", "resolve"]


class Choice(enum.StrEnum):
    """What ``--payload`` asks for."""

    REAL = "real"
    GENERATED = "generated"
    AUTO = "auto"


class PayloadError(RuntimeError):
    """The real payload cannot be found or built (the message says what to do)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Resolved:
    """The payload the sandbox uses.

    Attributes:
        kind: ``real`` or ``generated`` (never ``auto``).
        directory: The folder with ``manifest.json``; ``None`` for a generated payload, which the
            sandbox writes into its own state folder.
        reason: Which payload it is and why, for the user (``real (the binaries in ...)``).
    """

    kind: Choice
    directory: Path | None
    reason: str


def build_script() -> Path:
    """``hack/payload/build.sh`` of this checkout."""
    return cp.project_root() / "hack" / "payload" / "build.sh"


def _last_line(args: list[str], *, capture_stderr: bool) -> Path:
    try:
        done = subprocess.run(
            args,
            check=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if capture_stderr else None,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        raise PayloadError(f"{' '.join(args)} failed: {detail.strip()}") from exc
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise PayloadError(f"{' '.join(args)} printed no folder")
    return Path(lines[-1])


def cached_dir() -> Path:
    """The folder the real payload of the pinned versions is (or would be) built into."""
    return _last_line([str(build_script()), "--dir"], capture_stderr=True)


def is_built(directory: Path) -> bool:
    """Whether ``directory`` holds a manifest and every file it lists (not verified)."""
    try:
        loaded = payload_manifest.load_manifest(directory)
    except payload_manifest.PayloadError:
        return False
    return all(item.source.is_file() for item in loaded.files)


def build() -> Path:
    """Build the real payload (skipping what is built; progress goes to stderr); its folder."""
    return _last_line([str(build_script())], capture_stderr=False)


def resolve(choice: Choice) -> Resolved:
    """Decide which payload to use, building the real one only when asked for by name.

    Raises:
        PayloadError: ``real`` was asked for and cannot be built.
    """
    if choice is Choice.GENERATED:
        return Resolved(Choice.GENERATED, None, "generated (small fake binaries)")
    directory = cached_dir()
    if is_built(directory):
        return Resolved(Choice.REAL, directory, f"real (the binaries in {directory})")
    if choice is Choice.REAL:
        directory = build()
        return Resolved(Choice.REAL, directory, f"real (built into {directory})")
    return Resolved(
        Choice.GENERATED,
        None,
        "generated (small fake binaries): the real payload is not built yet; "
        "`make payload` builds it once (about ten minutes cold), and the sandbox uses it after that",
    )
