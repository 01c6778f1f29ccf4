"""Where a py-spy sample of the operator spent its time: the functions with the most samples.

Reads the collapsed stacks ``benchmarks/scale.py --py-spy-from N`` writes (``py-spy record
--format raw``: ``frame;frame;...;frame COUNT`` per line) and prints, for the top functions, the
share of samples in which each one was on the stack ("total") and at its top ("self").

Run: ``.venv/bin/python benchmarks/hotspots.py benchmarks/results/operator-listed-100.txt``
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """``function (path/to/module.py:12)`` -> ``module.py:function``."""
    found = _FRAME.match(frame.strip())
    if found is None:
        return frame.strip()
    return f"{Path(found['file']).name}:{found['function']}"


def hotspots(text: str) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """Samples in all, and per function the samples on the stack and at its top."""
    total: collections.Counter[str] = collections.Counter()
    top: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        weight = int(count)
        samples += weight
        frames = [frame_name(frame) for frame in stack.split(";") if frame]
        for name in set(frames):
            total[name] += weight
        if frames:
            top[frames[-1]] += weight
    return samples, total, top


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    samples, total, top = hotspots(args.file.read_text())
    print(f"{samples} samples; functions by time at the top of the stack (self), then on it")
    print("| function | self | total |")
    print("|---|---|---|")
    for name, count in top.most_common(args.top):
        print(f"| `{name}` | {count / samples:.1%} | {total[name] / samples:.1%} |")


if __name__ == "__main__":
    main()
