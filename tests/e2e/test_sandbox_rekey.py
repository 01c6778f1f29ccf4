"""`wmco sandbox rotate-key` under a running `wmco sandbox up`: a person's key rotation.

The sandbox runs as its own process, as a user starts it; the rotation is a second process. The
key files it documents (``DIR/ssh/private-key.pem``, ``DIR/ssh/previous-private-key.pem``) are
what the test logs in with, over real SSH to the simulated hosts listed in ``DIR/hosts.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import pytest

from wmco_sandbox.controlplane import find_binaries

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def logs_in(address: str, port: int, key_file: Path) -> bool:
    """Whether a new SSH connection with the key in ``key_file`` runs a command."""
    try:
        async with asyncssh.connect(
            address,
            port,
            username="Administrator",
            client_keys=[str(key_file)],
            known_hosts=None,
            agent_path=None,
            config=None,
            connect_timeout=10,
        ) as conn:
            return (await conn.run("hostname", check=False)).exit_status == 0
    except asyncssh.PermissionDenied:
        return False


def wmco(*args: str, **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wmco", *args],
        capture_output=True,
        text=True,
        check=False,
        **options,  # type: ignore[call-overload]
    )


def test_a_key_rotated_under_a_running_sandbox_logs_in_and_the_old_one_is_refused(
    tmp_path: Path,
) -> None:
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
        key = state / "ssh" / "private-key.pem"
        assert f"SSH key: {key}" in log.read_text()
        assert key.stat().st_mode & 0o777 == 0o600
        old = key.read_bytes()
        hosts = json.loads((state / "hosts.json").read_text())
        assert len(hosts) == 2
        for host in hosts:
            assert asyncio.run(logs_in(host["address"], host["ssh_port"], key))

        rotated = wmco("sandbox", "rotate-key", "--state-dir", str(state), timeout=300)

        assert rotated.returncode == 0, rotated.stderr + log.read_text()[-3000:]
        assert "2/2 Windows nodes moved to the new key" in rotated.stderr
        assert "key rotation complete" in rotated.stderr
        assert rotated.stdout.strip() == str(key)
        previous = state / "ssh" / "previous-private-key.pem"
        assert previous.read_bytes() == old and key.read_bytes() != old
        for host in hosts:
            address, port = host["address"], host["ssh_port"]
            assert asyncio.run(logs_in(address, port, key)), f"new key refused by {address}"
            assert not asyncio.run(logs_in(address, port, previous)), f"{address}: old key works"
        nodes = subprocess.run(
            [
                str(find_binaries() / "kubectl"),
                f"--kubeconfig={state / 'kubeconfig'}",
                *("get", "nodes", "-o", "json"),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        for node in json.loads(nodes)["items"]:
            ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
            assert [c["status"] for c in ready] == ["True"], node["metadata"]["name"]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
