"""`wmco sandbox up` as a user runs it, in its own process: state files, progress, clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wmco_sandbox.controlplane import find_binaries

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_sandbox_up_writes_its_state_and_stops_cleanly(tmp_path: Path) -> None:
    """`wmco sandbox up` as a user runs it: progress, kubeconfig, hosts.json, ready, clean stop."""

    state = tmp_path / "up"
    log = tmp_path / "up.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wmco",
                "sandbox",
                "up",
                "--windows-nodes",
                "1",
                "--byoh-hosts",
                "1",
                "--state-dir",
                str(state),
                "--payload",
                "generated",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while not (state / "ready").exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        hosts = json.loads((state / "hosts.json").read_text())
        assert sorted(h["brought_by"] for h in hosts) == ["configmap", "machine"]
        assert all(h["windows_build"] == "10.0.20348" and h["ssh_port"] for h in hosts)
        assert all(h["address"].startswith("127.0.") for h in hosts)
        nodes = subprocess.run(
            [
                str(find_binaries() / "kubectl"),
                f"--kubeconfig={state / 'kubeconfig'}",
                "get",
                "nodes",
                "-o",
                "name",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
        assert len(nodes) == 2, nodes
        output = log.read_text()
        # not a terminal: one plain line per host state change, ending at ready for both hosts
        assert len(re.findall(r"^\[ *[\d.]+s\] \S+ .*-> ready$", output, re.MULTILINE)) == 2, output
        assert "\x1b[" not in output
        assert "payload: generated (small fake binaries)" in output
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert not (state / "ready").exists()
        leftovers = subprocess.run(
            ["pgrep", "-f", str(state)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert leftovers == [], f"processes left running: {leftovers}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
