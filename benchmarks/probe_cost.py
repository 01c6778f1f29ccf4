"""Benchmark: the operator's CPU per drift probe, and its memory per open SSH connection.

At steady state the operator's only regular work per host is the drift probe (issue 12 §3): one
fresh SSH connection (key exchange, host-key check, public-key login), the one-exec probe
(``commands.drift_probe`` of the managed services, the payload's files and the HNS state), and
the close, once per host every ``settings.resync_interval``. Its CPU cost, times the hosts, over
the interval is the operator's idle CPU at that fleet size.

This boots ONE simulated Windows host (``fast`` profile) in a worker process of its own
(:mod:`wmco_sandbox.fleetproc`), so this process's CPU is the client's alone, and runs
``--probes`` probes (each a fresh :class:`wmco.windows.ssh.WindowsHost`: connect, probe, close),
measuring this process's CPU (``time.process_time``) and wall time per probe. It prints the
median and what ``--hosts`` hosts probed every ``--interval`` seconds cost as a share of one core.
Then it opens ``--connections`` connections to the host at once and reports what each adds to
this process's heap (``tracemalloc``) and RSS: what a host costs while its connection is open.

Run: ``.venv/bin/python benchmarks/probe_cost.py [--hosts 500] [--interval 600] [--out DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import pathlib
import statistics
import time
import tracemalloc

import asyncssh

from wmco import userdata
from wmco.windows import commands, layout, services, ssh
from wmco_sandbox import controlplane, fleetproc

USER = "Administrator"
FILES = 23
"""Files a configured host's probe hashes (the payload and generated files of ``ovn-hybrid``)."""


def probe_command(files: list[str]) -> str:
    """The probe of a configured ``ovn-hybrid`` host: every managed service, file and HNS."""
    return commands.drift_probe(services.ALL_MANAGED_SERVICES, files, hns=True)


async def _main(args: argparse.Namespace) -> dict[str, float]:
    key = asyncssh.generate_private_key("ssh-ed25519", comment="wmco")
    pem = key.export_private_key("openssh")
    port = controlplane.free_port()
    files = [f"{layout.K_DIR}\\file-{i}.exe" for i in range(args.files)]
    command = probe_command(files)
    options = fleetproc.WorkerOptions(ssh_port=port, profile="fast")
    async with fleetproc.ProcessFleet(1, options) as fleet:
        address = await fleet.boot_listed(
            "probe", user_data=userdata.user_data_for_keys(pem, ssh_port=port)
        )
        cpu: list[float] = []
        wall: list[float] = []
        for _ in range(args.probes + 1):
            started, started_cpu = time.perf_counter(), time.process_time()
            async with ssh.WindowsHost(address, USER, key, port=port) as host:
                result = await host.run(command, what="drift probe")
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            if result.exit_status is None:
                raise SystemExit("the probe got no answer")
        heap, rss = await _connection_memory(address, port, key, args.connections)
    cpu, wall = cpu[1:], wall[1:]  # the first one warms imports and caches up
    per_probe = statistics.median(cpu)
    return {
        "probes": args.probes,
        "files": args.files,
        "cpu_ms_per_probe": round(per_probe * 1000, 2),
        "wall_ms_per_probe": round(statistics.median(wall) * 1000, 2),
        "hosts": args.hosts,
        "interval_s": args.interval,
        "idle_core_share": round(per_probe * args.hosts / args.interval, 4),
        "connections": args.connections,
        "heap_kib_per_connection": round(heap / 1024, 1),
        "rss_kib_per_connection": round(rss / 1024, 1),
    }


def _rss() -> int:
    """This process's resident set size in bytes (``VmRSS``)."""
    status = pathlib.Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


async def _connection_memory(
    address: str, port: int, key: asyncssh.SSHKey, count: int
) -> tuple[float, float]:
    """Heap and RSS bytes each of ``count`` open connections (after one command) adds."""
    gc.collect()
    tracemalloc.start()
    rss_before = _rss()
    hosts = [ssh.WindowsHost(address, USER, key, port=port) for _ in range(count)]
    try:
        for host in hosts:
            await host.connect()
            await host.run("hostname", what="hostname")
        gc.collect()
        heap, _ = tracemalloc.get_traced_memory()
        return heap / count, (_rss() - rss_before) / count
    finally:
        tracemalloc.stop()
        for host in hosts:
            await host.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--files", type=int, default=FILES, help="files the probe hashes")
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--interval", type=float, default=600.0)
    parser.add_argument("--connections", type=int, default=50, help="opened at once")
    parser.add_argument("--out", help="write OUT/probe.json")
    args = parser.parse_args()
    report = asyncio.run(_main(args))
    print(json.dumps(report, indent=2))
    if args.out:
        (pathlib.Path(args.out) / "probe.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['cpu_ms_per_probe']} ms of CPU per probe: {report['hosts']} hosts every "
        f"{report['interval_s']:.0f} s keep {report['idle_core_share'] * 100:.2f} % of a core busy"
    )
    print(
        f"an open connection: {report['heap_kib_per_connection']} KiB of heap, "
        f"{report['rss_kib_per_connection']} KiB of RSS"
    )


if __name__ == "__main__":
    main()
