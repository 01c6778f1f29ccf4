"""Benchmark: time to N Ready Windows nodes, and what the operator's process spends on them.

For each N (``--hosts 1,10,100,500``) and each way hosts arrive (``--modes listed,machines``:
the ``windows-instances`` ConfigMap, or a MachineSet through the simulated Machine API), this
starts a fresh sandbox — the real control plane, the operator as its own process with
``deploy/``'s RBAC, the cluster side of the ``ovn-hybrid`` network — with the simulated hosts in
worker processes (:mod:`wmco_sandbox.fleetproc`) on the ``realistic`` host profile, so the
operator's process is measured alone. It records:

* ``seconds``: from listing the hosts (or scaling the MachineSet) until every Node is Ready and
  carries the operator's version annotation; ``ratio`` = T(N)/T(1) of the same mode;
* the operator's CPU seconds per host configured, its peak RSS, and its idle CPU (share of one
  core) over ``--idle-seconds``, ``--settle-seconds`` after everything is Ready (the last hosts'
  own follow-up work and the cluster's reaction to 500 new Nodes are not the steady state);
* per host: SSH execs, SFTP sessions and SFTP bytes (counted by the simulated hosts) and API
  requests: the growth of the API server's own ``apiserver_request_total`` over the run (from the
  list of the hosts to the last Ready), over N. That counter has no user label, so it holds
  every client (the operator, the simulated kubelets, the control plane's controllers, this
  benchmark's one watch); ``api_requests_top`` splits it by verb and resource, so a figure that
  grows with N says who sends it;
* the serial mode (concurrency 1, the reference operator's one-after-another) at ``--serial-at``.

It writes ``OUT/scale.json`` (a list of records) and ``OUT/scale.png`` (time to all Ready against
N, with the ideal flat line and the serial line), and prints a table with the issue's targets.

Run: ``.venv/bin/python benchmarks/scale.py --hosts 1,10 --out benchmarks/results``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from lightkube.resources.core_v1 import Node

from wmco import names
from wmco.settings import Settings
from wmco_sandbox import controlplane as cp
from wmco_sandbox import fleetproc, payloads
from wmco_sandbox.sandbox import Sandbox

TARGETS = {
    "ratio_100": 1.3,
    "ratio_500": 2.0,
    "idle_cpu_500": 0.01,
    "rss_mb_500": 200.0,
}
_CLOCK = os.sysconf("SC_CLK_TCK")
DEFAULTS = Settings()
"""The operator's defaults: a run measures them unless told otherwise."""


@dataclasses.dataclass
class Record:
    """One measured run."""

    hosts: int
    mode: str
    concurrency: int
    seconds: float
    ratio: float | None
    operator_cpu_s_per_host: float
    operator_peak_rss_mb: float
    operator_idle_cpu: float
    execs_per_host: float
    sftp_sessions_per_host: float
    bytes_per_host: float
    api_requests_per_host: float
    api_requests_top: dict[str, float]
    profile: str
    payload: str
    commit: str = ""
    fleet_cpu_s_per_host: float | None = None
    machine_busy: float | None = None
    upload_memory_mib: int | None = None
    idle_settle_s: float | None = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK


def machine_jiffies() -> tuple[int, int]:
    """Busy and total jiffies of every core since boot (``/proc/stat``'s ``cpu`` line)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a process in MB (``VmHWM``)."""
    found = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(found.group(1)) / 1024 if found else 0.0


def api_requests(kubeconfig: Path) -> Counter[str]:
    """The API server's ``apiserver_request_total``, by ``VERB resource[/subresource]``."""
    text = subprocess.run(
        [
            str(cp.find_binaries() / "kubectl"),
            f"--kubeconfig={kubeconfig}",
            "get",
            "--raw",
            "/metrics",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        series, value = line.rsplit(" ", 1)
        labels = dict(re.findall(r'(\w+)="([^"]*)"', series))
        what = labels.get("resource", "") + (
            f"/{labels['subresource']}" if labels.get("subresource") else ""
        )
        counts[f"{labels.get('verb', '?')} {what or '-'}"] += int(float(value))
    return counts


def per_host(
    before: Counter[str], after: Counter[str], hosts: int
) -> tuple[float, dict[str, float]]:
    """Requests per host over a run, in all and the eight largest by verb and resource."""
    grown = after - before
    top = {what: round(count / hosts, 1) for what, count in grown.most_common(8)}
    return round(sum(grown.values()) / hosts, 1), top


async def wait_all_ready(sandbox: Sandbox, count: int, timeout: float) -> None:
    """Watch Windows Nodes until ``count`` are Ready and configured (one watch, no polling)."""
    done: set[str] = set()

    async def watch() -> None:
        async for _, node in sandbox.kube.watch(
            Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS}
        ):
            meta = node.metadata
            if meta is None or not meta.name:
                continue
            ready = any(
                c.type == "Ready" and c.status == "True"
                for c in (node.status.conditions if node.status else None) or []
            )
            if ready and names.VERSION_ANNOTATION in (meta.annotations or {}):
                done.add(meta.name)
            else:
                done.discard(meta.name)
            if len(done) >= count:
                return
            sandbox.check_operator()

    await asyncio.wait_for(watch(), timeout)


async def run_one(
    hosts: int,
    mode: str,
    concurrency: int,
    args: argparse.Namespace,
    payload: payloads.Resolved,
    workdir: Path,
) -> Record:
    """One fresh sandbox, ``hosts`` hosts arriving by ``mode``; the measurements."""
    port = cp.free_port()
    options = fleetproc.WorkerOptions(ssh_port=port, profile=args.profile, lease_renew=10.0)
    workers = max(1, min(args.workers, hosts))
    async with (
        fleetproc.ProcessFleet(workers, options, network=args.network) as fleet,
        Sandbox(
            workdir / f"{mode}-{hosts}-c{concurrency}",
            ssh_port=port,
            payload_dir=payload.directory,
            host_profile=args.profile,
            host_provider=fleet,
            operator_env={
                "WMCO_CONCURRENCY": str(concurrency),
                "WMCO_UPLOAD_MEMORY_MIB": str(args.upload_memory),
                "WMCO_NODE_READY_TIMEOUT": "1800",
                "WMCO_SSH_BOOT_DEADLINE": "1800",
                "WMCO_LOG_LEVEL": "WARNING",
            },
        ) as sandbox,
    ):
        assert sandbox.operator is not None and sandbox.operator.proc is not None
        pid = sandbox.operator.proc.pid
        script = await sandbox.user_data()
        listed: dict[str, str] = {}
        if mode == "listed":
            addresses = await asyncio.gather(
                *(fleet.boot_listed(f"byoh-{i}", user_data=script) for i in range(hosts))
            )
            listed = {address: "username=Administrator" for address in addresses}
        cpu_before, requests_before = cpu_seconds(pid), api_requests(sandbox.kubeconfig)
        fleet_before, busy_before = sum(cpu_seconds(p) for p in fleet.pids), machine_jiffies()
        sampler = start_profile(
            args, pid, Path(args.out) / f"operator-{mode}-{hosts}-c{concurrency}.txt", hosts
        )
        started = time.monotonic()
        if mode == "listed":
            await sandbox.set_listed_entries(dict(listed))
        else:
            await sandbox.apply_machineset(hosts)
        try:
            await wait_all_ready(sandbox, hosts, args.timeout)
        finally:
            stop_profile(sampler)
        seconds = time.monotonic() - started
        cpu_after, requests_after = cpu_seconds(pid), api_requests(sandbox.kubeconfig)
        fleet_after, busy_after = sum(cpu_seconds(p) for p in fleet.pids), machine_jiffies()
        await asyncio.sleep(args.settle_seconds)  # a measurement window, not a synchronisation
        idle_from = cpu_seconds(pid)
        idle_sampler = start_profile(
            args, pid, Path(args.out) / f"operator-{mode}-{hosts}-c{concurrency}-idle.txt", hosts
        )
        try:
            await asyncio.sleep(args.idle_seconds)  # measuring idle CPU: nothing to wait for
        finally:
            stop_profile(idle_sampler)
        idle = (cpu_seconds(pid) - idle_from) / args.idle_seconds
        traffic = await fleet.traffic()
        rss = peak_rss_mb(pid)
    count = max(len(traffic), 1)
    requests = per_host(requests_before, requests_after, hosts)
    return Record(
        hosts=hosts,
        mode=mode,
        concurrency=concurrency,
        seconds=round(seconds, 2),
        ratio=None,
        operator_cpu_s_per_host=round((cpu_after - cpu_before) / hosts, 3),
        operator_peak_rss_mb=round(rss, 1),
        operator_idle_cpu=round(idle, 4),
        execs_per_host=sum(t["execs"] for t in traffic.values()) / count,
        sftp_sessions_per_host=sum(t["sftp_sessions"] for t in traffic.values()) / count,
        bytes_per_host=sum(t["sftp_bytes_written"] for t in traffic.values()) / count,
        api_requests_per_host=requests[0],
        api_requests_top=requests[1],
        profile=args.profile,
        payload=payload.reason,
        fleet_cpu_s_per_host=round((fleet_after - fleet_before) / hosts, 3),
        machine_busy=round(
            (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1), 3
        ),
        upload_memory_mib=args.upload_memory,
        idle_settle_s=args.settle_seconds,
    )


def with_ratios(records: list[Record]) -> list[Record]:
    """Fill ``ratio`` = T(N)/T(1) within each mode at the default concurrency."""
    for record in records:
        base = next(
            (
                r
                for r in records
                if r.mode == record.mode and r.hosts == 1 and r.concurrency == record.concurrency
            ),
            None,
        ) or next((r for r in records if r.mode == record.mode and r.hosts == 1), None)
        record.ratio = round(record.seconds / base.seconds, 2) if base else None
    return records


def plot(records: list[Record], path: Path, default_concurrency: int, profile: str) -> bool:
    """Time to all Ready against N, with the ideal flat line and the serial line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    figure, axes = plt.subplots(figsize=(7, 4.5))
    drawn_reference = False
    for mode, concurrency in sorted(
        {(r.mode, r.concurrency) for r in records if r.concurrency > 1}
    ):
        points = sorted(
            (r.hosts, r.seconds) for r in records if r.mode == mode and r.concurrency == concurrency
        )
        style = "-" if concurrency == default_concurrency else "--"
        axes.plot(*zip(*points, strict=True), marker="o", linestyle=style,
                  label=f"wmco, {mode}, concurrency {concurrency}")  # fmt: skip
        one = next((r.seconds for r in records if r.mode == mode and r.hosts == 1), None)
        if one is not None and not drawn_reference:
            drawn_reference = True
            most = max(r.hosts for r in records)
            axes.plot([1, most], [one, one], linestyle="--", color="grey", label="ideal: T(1)")
            axes.plot(
                [1, most], [one, one * most], linestyle=":", color="red",
                label="one after another (the reference): N·T(1)",
            )  # fmt: skip
    for record in records:
        if record.concurrency == 1 and record.hosts > 1:
            axes.scatter([record.hosts], [record.seconds], marker="x", color="red",
                         label=f"wmco at concurrency 1, {record.mode}")  # fmt: skip
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("Windows hosts (N)")
    axes.set_ylabel("seconds until every node is Ready")
    axes.set_title(f"wmco: time to N Ready Windows nodes ({profile} host profile)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return True


def report(records: list[Record]) -> str:
    """The table, with the targets next to the figures they apply to."""
    lines = [
        "| mode | N | concurrency | T(N) s | T(N)/T(1) | CPU s/host | peak RSS MB | idle CPU | "
        "execs/host | SFTP/host | MB/host | API req/host |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        target = ""
        if r.hosts == 100 and r.concurrency != 1:
            target = f" (target ≤ {TARGETS['ratio_100']})"
        if r.hosts == 500 and r.concurrency != 1:
            target = f" (target ≤ {TARGETS['ratio_500']})"
        lines.append(
            f"| {r.mode} | {r.hosts} | {r.concurrency} | {r.seconds:.1f} | "
            f"{r.ratio if r.ratio is not None else '-'}{target} | {r.operator_cpu_s_per_host:.3f} | "
            f"{r.operator_peak_rss_mb:.0f} | {r.operator_idle_cpu * 100:.2f} % | "
            f"{r.execs_per_host:.0f} | {r.sftp_sessions_per_host:.0f} | "
            f"{r.bytes_per_host / 1e6:.1f} | {r.api_requests_per_host:.0f} |"
        )
    for r in records:
        top = ", ".join(f"{what} {count:g}" for what, count in r.api_requests_top.items())
        lines.append(f"API requests per host, {r.mode} N={r.hosts} c={r.concurrency}: {top}")
    lines.append(
        f"Targets at 500 nodes: idle CPU < {TARGETS['idle_cpu_500'] * 100:.0f} % of a core, "
        f"peak RSS < {TARGETS['rss_mb_500']:.0f} MB."
    )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    """Every run, then the JSON, the plot and the table."""
    counts = [int(n) for n in args.hosts.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    payload = payloads.resolve(payloads.Choice(args.payload))
    out = Path(args.out)
    records = earlier(out, append=args.append)
    commit = current_commit()
    runs = [(mode, hosts, args.concurrency) for mode in modes for hosts in counts]
    if args.serial_at:
        runs += [(mode, args.serial_at, 1) for mode in modes]
    with tempfile.TemporaryDirectory(prefix="wmco-scale-") as tmp:
        workdir = Path(tmp)
        for mode, hosts, concurrency in runs:
            print(f"{mode}: {hosts} host(s), concurrency {concurrency} ...", flush=True)
            record = await run_one(hosts, mode, concurrency, args, payload, workdir)
            record.commit = commit
            records = [
                r for r in records if (r.mode, r.hosts, r.concurrency) != (mode, hosts, concurrency)
            ]
            records.append(record)
            print(f"  {record.seconds:.1f} s", flush=True)
            save(records, out / "scale.json")  # a long series keeps every finished run
    save(records, out / "scale.json")
    plotted = plot(records, out / "scale.png", args.concurrency, args.profile)
    print(report(records))
    print(f"wrote {out / 'scale.json'}" + (f" and {out / 'scale.png'}" if plotted else ""))


def start_profile(
    args: argparse.Namespace, pid: int, path: Path, hosts: int
) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the operator (``--py-spy-from N``), or nothing.

    Two samplings per run: while the hosts join, and over the idle window after.

    The samples are written as collapsed stacks (``--format raw``): one line per stack with its
    count, which ``benchmarks/hotspots.py`` sums per function.
    """
    if not args.py_spy_from or hosts < args.py_spy_from:
        return None
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "50",
            "--output",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profile(sampler: subprocess.Popen[bytes] | None) -> None:
    """End the sampling; py-spy writes its file on SIGINT."""
    if sampler is None:
        return
    sampler.send_signal(signal.SIGINT)
    try:
        sampler.wait(timeout=60)
    except subprocess.TimeoutExpired:
        sampler.kill()


def earlier(out: Path, *, append: bool) -> list[Record]:
    """Make ``out``; with ``append``, the records of an earlier invocation found there."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scale.json"
    if not append or not path.exists():
        return []
    return [Record(**item) for item in json.loads(path.read_text())]


def save(records: list[Record], path: Path) -> None:
    """Ratios filled in, sorted by mode, concurrency and N, written as JSON."""
    with_ratios(records)
    records.sort(key=lambda r: (r.mode, -r.concurrency, r.hosts))
    path.write_text(json.dumps([dataclasses.asdict(r) for r in records], indent=2) + "\n")


def current_commit() -> str:
    """The checkout's commit (short), so every figure says what code it measured."""
    found = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return found.stdout.strip()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hosts", default="1,10,100,500", help="comma-separated N values")
    parser.add_argument("--modes", default="listed,machines", help="listed, machines, or both")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--profile", default="realistic", help="host profile (fast, realistic)")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULTS.concurrency, help="the operator's setting"
    )
    parser.add_argument(
        "--upload-memory",
        type=int,
        default=DEFAULTS.upload_memory_mib,
        help="the operator's upload_memory_mib (MiB of uploads in flight)",
    )
    parser.add_argument("--serial-at", type=int, default=10, help="N of the serial run (0: none)")
    parser.add_argument("--workers", type=int, default=2, help="host worker processes")
    parser.add_argument("--network", type=int, default=77, help="hosts listen on 127.NETWORK.x.y")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument(
        "--settle-seconds", type=float, default=60.0, help="wait after all Ready before idle"
    )
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds per run")
    parser.add_argument("--payload", default="auto", choices=[c.value for c in payloads.Choice])
    parser.add_argument(
        "--py-spy-from",
        type=int,
        default=0,
        help="sample the operator with py-spy in runs of at least this many hosts (0: never)",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep OUT/scale.json's records of other runs (a run of the same mode, N and "
        "concurrency replaces its earlier record)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    Path(arguments.out).mkdir(parents=True, exist_ok=True)
    asyncio.run(main(arguments))
