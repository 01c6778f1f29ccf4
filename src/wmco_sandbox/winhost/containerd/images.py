"""Images the simulated containerd "pulls": the pause image's platforms, and synthesised logs.

No image is ever downloaded. Two facts about images matter to a Windows node, and they are
modelled here (pure functions):

* The pause image is a manifest list with one entry per Windows build. A Windows Server 2025
  host (build 26100) needs ``pause`` 3.10.2 or later; before, the list has no 26100 entry and
  containerd fails every sandbox with ``no match for platform in manifest: not found``
  (issue 8 contract §4). 2019 and 2022 are served by every pause release the simulation knows.
* A container without a registered behaviour still "runs" and its log must say something
  useful to ``kubectl logs``: one line naming the image and the command, then the literal text
  of any ``echo`` / ``Write-Output`` / ``Write-Host`` in its command or arguments.
"""

from __future__ import annotations

import re
import shlex

__all__ = ["image_name", "pause_supports", "synthesised_log"]

_PAUSE_REPOSITORIES = ("mcr.microsoft.com/oss/kubernetes/pause", "registry.k8s.io/pause")
_ECHO = re.compile(
    r"""(?:^|[;&|(\s])(?:echo|write-output|write-host)(?:\s+-\w+)*\s+("[^"]*"|'[^']*'|[^;&|)\r\n]+)""",
    re.IGNORECASE,
)


def image_name(image: str) -> str:
    """The image reference without tag or digest (``repo/name:1.0`` -> ``repo/name``)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return name


def _version(tag: str) -> tuple[int, ...] | None:
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:-.*)?", tag)
    if match is None:
        return None
    return tuple(int(part or 0) for part in match.groups())


def pause_supports(image: str, windows_build: str) -> bool:
    """Whether a pause image's manifest list has an entry for the host's build.

    Args:
        image: The sandbox image reference.
        windows_build: ``10.0.26100`` and the like.

    Returns:
        False only for a known pause repository whose tag predates the build's first release.
    """
    name = image_name(image)
    if name not in _PAUSE_REPOSITORIES or windows_build.split(".")[-1] != "26100":
        return True
    tag = image.split("@", 1)[0][len(name) + 1 :] if ":" in image[len(name) :] else ""
    version = _version(tag)
    return version is None or version >= (3, 10, 2)


def _literal(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return " ".join(shlex.split(text))
    except ValueError:
        return text


def synthesised_log(image: str, command: tuple[str, ...], args: tuple[str, ...]) -> list[str]:
    """The log lines of a container that has no registered behaviour.

    Args:
        image: Its image.
        command: ``command`` of the container.
        args: ``args`` of the container.

    Returns:
        A line saying what runs, then each literal it echoes.
    """
    argv = [*command, *args]
    shown = " ".join(argv) if argv else "the image's entrypoint"
    lines = [f"[simulated container] image {image} running {shown}"]
    for part in argv:
        for match in _ECHO.finditer(part):
            lines.append(_literal(match.group(1)))
    if len(argv) >= 2 and argv[0].lower() in ("echo", "write-output", "write-host"):
        lines.append(" ".join(argv[1:]))
    return lines
