"""The monitoring scenarios (tests/integration/monitoring_netns.py), in a network namespace.

The API server refuses loopback addresses in an EndpointSlice (``may not be in the loopback
range``), and the sandbox's hosts live on 127.0.x.y. So the scenarios run in a pytest of their
own inside a fresh network namespace (``unshare``) where ``198.18.0.0/15`` is routed to ``lo``
as local addresses: the hosts get non-loopback addresses, nodes report them as InternalIPs and
the EndpointSlice lists them, as on a real cluster. Nothing outside the namespace changes. That
pytest starts its own control plane from the same cached binaries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wmco_sandbox.controlplane import project_root

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

LOCAL_RANGE = "198.18.0.0/15"


def namespace_command(inner: list[str]) -> list[str]:
    unshare = (
        ["unshare", "--net"]
        if os.geteuid() == 0
        else ["unshare", "--user", "--map-root-user", "--net"]
    )
    script = f'ip link set lo up && ip route add local {LOCAL_RANGE} dev lo && exec "$@"'
    return [*unshare, "sh", "-c", script, "netns", *inner]


def test_monitoring_scenarios_pass_in_their_own_network_namespace(tmp_path: Path) -> None:
    root = project_root()
    inner = [
        sys.executable, "-m", "pytest", str(root / "tests" / "integration" / "monitoring_netns.py"),
        "-p", "no:cacheprovider", "-q", "-rA", f"--basetemp={tmp_path / 'inner'}",
    ]  # fmt: skip
    env = {**os.environ, "WMCO_TEST_HOST_NETWORK": "198.18"}
    env.pop("WMCO_TEST_STATE_DIR", None)  # its own control plane, inside the namespace
    result = subprocess.run(
        namespace_command(inner), cwd=root, env=env, capture_output=True, text=True, timeout=1400
    )
    output = result.stdout + result.stderr
    summary = [
        line for line in output.splitlines() if line.startswith(("PASSED", "FAILED", "ERROR"))
    ]
    print(output[-20000:])
    assert result.returncode == 0, "\n".join(summary) or output[-4000:]
    assert sum(line.startswith("PASSED") for line in summary) == 6, summary
