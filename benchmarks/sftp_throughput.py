"""Benchmark: the operator's SFTP upload against OpenSSH's own ``sftp`` client, same host.

Issue 12 §4 asks the upload path (:meth:`wmco.windows.ssh.WindowsHost.put_file`, the hot path of
the configure flow: one ``.tar.gz`` per host) to reach at least 0.9x the throughput of
``/usr/bin/sftp`` to the same simulated host. This starts ONE simulated Windows host
(:class:`wmco_sandbox.winhost.host.WindowsHost`, ``fast`` profile, sink mode so a 200 MB file
keeps only its size and SHA-256), in a worker process of its own (:mod:`wmco_sandbox.fleetproc`)
by default so both clients talk to a server that does not share their CPU, and uploads a file of
random bytes (incompressible, like a ``.tar.gz``) ``--runs`` times each way, alternating:

* ``wmco``: a fresh :class:`wmco.windows.ssh.WindowsHost` connects, ``put_file`` uploads, it
  closes;
* ``sftp``: ``sftp -b`` with a one-line ``put`` batch (a fresh process: connect, upload, exit),
  OpenSSH's defaults (it picks ChaCha20-Poly1305);
* ``sftp-gcm``: the same with ``-c aes128-gcm@openssh.com``, the cipher ``put_file`` picks, so
  the comparison is also made cipher for cipher.

All timings include connecting and authenticating, so they do the same work; ``put_file`` alone
is reported as well, and so are the CPU seconds per run of the client (this process, or ``sftp``
and its ``ssh``) and of the host's process; one more ``put_file`` runs under ``tracemalloc`` for its
heap peak. Every upload is checked on the host (SHA-256). It prints the throughputs and the ratios of the medians (``ratio``: against
``sftp``, the issue's target; ``ratio_same_cipher``: against ``sftp-gcm``), and writes
``OUT/sftp.json``.

Run: ``.venv/bin/python benchmarks/sftp_throughput.py --out benchmarks/results``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import asyncssh

from wmco import userdata
from wmco.windows import commands, sftp, ssh
from wmco_sandbox import fleetproc
from wmco_sandbox.winhost.core import profile as host_profile
from wmco_sandbox.winhost.host import WindowsHost

MB = 1_000_000
SINK_THRESHOLD = 64 * 1024
REMOTE_DIR = "C:\\bench"
USER = "Administrator"


@dataclasses.dataclass(slots=True)
class Run:
    """One upload."""

    client: str
    seconds: float
    upload_seconds: float | None = None
    host_cpu: float | None = None
    client_cpu: float | None = None

    def rate(self, size: int) -> float:
        """MB/s over the whole run."""
        return size / MB / self.seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _client_cpu() -> float:
    """CPU seconds of this process and its finished children (``sftp`` and its ``ssh``)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _openssh_version() -> str:
    return subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip()


def _make_source(path: pathlib.Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * 1024 * 1024))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest().upper()


class _Target:
    """Where the simulated host runs: its own worker process, or this process."""

    def __init__(self, in_process: bool, port: int) -> None:
        self.in_process = in_process
        self.port = port
        self.address = ""
        self._stack = contextlib.AsyncExitStack()
        self._fleet: fleetproc.ProcessFleet | None = None
        self._host: WindowsHost | None = None

    async def start(self, script: str) -> None:
        if self.in_process:
            self._host = WindowsHost(
                port=self.port, sink_threshold=SINK_THRESHOLD, profile=host_profile.FAST
            )
            await self._host.boot(script)
            self._stack.push_async_callback(self._host.stop)
            self.address = self._host.address
            return
        options = fleetproc.WorkerOptions(
            ssh_port=self.port, profile="fast", sink_threshold=SINK_THRESHOLD
        )
        self._fleet = await self._stack.enter_async_context(fleetproc.ProcessFleet(1, options))
        self.address = await self._fleet.boot_listed("bench", user_data=script)

    def cpu_seconds(self) -> float | None:
        """CPU seconds the host's worker process used so far (None in process)."""
        if self._fleet is None:
            return None
        fields = pathlib.Path(f"/proc/{self._fleet.pids[0]}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    async def sftp_sessions(self) -> int:
        if self._host is not None:
            return self._host.traffic.sftp_sessions
        assert self._fleet is not None
        return int((await self._fleet.traffic())["bench"]["sftp_sessions"])

    async def stop(self) -> None:
        await self._stack.aclose()


async def _wmco_upload(
    target: _Target, key: asyncssh.SSHKey, source: pathlib.Path, dest: str
) -> Run:
    started = time.perf_counter()
    async with ssh.WindowsHost(target.address, USER, key, port=target.port) as host:
        upload_started = time.perf_counter()
        await host.put_file(source, dest)
        upload = time.perf_counter() - upload_started
    return Run("wmco", time.perf_counter() - started, upload)


def _sftp_upload(
    target: _Target, key_file: pathlib.Path, source: pathlib.Path, dest: str, cipher: str | None
) -> Run:
    batch = key_file.parent / "batch"
    batch.write_text(f'put "{source}" "{sftp.sftp_path(dest)}"\n')
    argv = [
        "sftp", "-q", "-b", str(batch), "-i", str(key_file), "-P", str(target.port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
        *(["-c", cipher] if cipher else []),
        f"{USER}@{target.address}",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sftp failed ({done.returncode}): {done.stderr.strip()}")
    return Run("sftp-gcm" if cipher else "sftp", seconds)


async def _traced_peak(
    target: _Target, key: asyncssh.SSHKey, source: pathlib.Path, dest: str
) -> float:
    """MiB the Python heap grew by at most during one more ``put_file`` (not timed)."""
    async with ssh.WindowsHost(target.address, USER, key, port=target.port) as host:
        await host.put_bytes(b"", dest)  # session open before tracing starts
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            await host.put_file(source, dest)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return (peak - base) / 2**20


async def _check(host: ssh.WindowsHost, dest: str, expected: str) -> None:
    result = await host.run(commands.file_hash(dest), what="hash")
    if result.stdout.strip() != expected:
        raise SystemExit(f"{dest}: hash {result.stdout.strip()!r}, expected {expected}")


def _summary(runs: list[Run], size: int) -> dict[str, object]:
    rates = [r.rate(size) for r in runs]
    summary: dict[str, object] = {
        "seconds": [round(r.seconds, 3) for r in runs],
        "mb_per_s": [round(x, 1) for x in rates],
        "median_mb_per_s": round(statistics.median(rates), 1),
    }
    uploads = [r.upload_seconds for r in runs if r.upload_seconds is not None]
    if uploads:
        summary["put_file_mb_per_s"] = [round(size / MB / s, 1) for s in uploads]
    cpu = [r.host_cpu for r in runs if r.host_cpu is not None]
    if cpu:
        summary["host_cpu_s"] = [round(c, 2) for c in cpu]
    summary["client_cpu_s"] = [round(r.client_cpu or 0.0, 2) for r in runs]
    return summary


CLIENTS = ("wmco", "sftp", "sftp-gcm")
GCM = "aes128-gcm@openssh.com"


async def _main(args: argparse.Namespace) -> int:
    size = args.size_mb * MB
    key = asyncssh.generate_private_key("ssh-ed25519", comment="wmco")
    pem = key.export_private_key("openssh")
    port = args.port or _free_port()
    with tempfile.TemporaryDirectory(prefix="wmco-sftp-bench-") as tmp:
        work = pathlib.Path(tmp)
        key_file = work / "id_ed25519"
        key_file.write_bytes(pem)
        key_file.chmod(0o600)  # ssh refuses a private key others may read
        source = work / "payload.bin"
        expected = _make_source(source, size)
        target = _Target(args.in_process, port)
        await target.start(userdata.user_data_for_keys(pem, ssh_port=port))
        try:
            async with ssh.WindowsHost(target.address, USER, key, port=port) as admin:
                await admin.run(commands.make_directories([REMOTE_DIR]), what="mkdir")
                runs: dict[str, list[Run]] = {client: [] for client in CLIENTS}
                before = await target.sftp_sessions()
                for i in range(args.runs):
                    for client in CLIENTS:
                        dest = f"{REMOTE_DIR}\\{client}-{i}.bin"
                        cpu = target.cpu_seconds()
                        mine = _client_cpu()
                        if client == "wmco":
                            run = await _wmco_upload(target, key, source, dest)
                        else:
                            cipher = GCM if client == "sftp-gcm" else None
                            run = await asyncio.to_thread(
                                _sftp_upload, target, key_file, source, dest, cipher
                            )
                        after = target.cpu_seconds()
                        run.client_cpu = _client_cpu() - mine
                        if cpu is not None and after is not None:
                            run.host_cpu = after - cpu
                        await _check(admin, dest, expected)
                        runs[client].append(run)
                        print(
                            f"run {i + 1}: {client:8} {run.seconds:6.2f} s "
                            f"{run.rate(size):6.1f} MB/s",
                            flush=True,
                        )
                sessions = await target.sftp_sessions() - before
                peak = await _traced_peak(target, key, source, f"{REMOTE_DIR}\\traced.bin")
        finally:
            await target.stop()
    summary = {client: _summary(runs[client], size) for client in CLIENTS}
    median = {client: float(summary[client]["median_mb_per_s"]) for client in CLIENTS}  # type: ignore[arg-type]
    ratio = median["wmco"] / median["sftp"]
    same_cipher = median["wmco"] / median["sftp-gcm"]
    print(f"wmco put_file   : {summary['wmco']['mb_per_s']} MB/s (median {median['wmco']})")
    print(f"  upload alone  : {summary['wmco']['put_file_mb_per_s']} MB/s")
    print(f"sftp            : {summary['sftp']['mb_per_s']} MB/s (median {median['sftp']})")
    print(f"sftp -c {GCM}: {summary['sftp-gcm']['mb_per_s']} MB/s (median {median['sftp-gcm']})")
    print(f"ratio           : {ratio:.2f} (target >= 0.9); same cipher: {same_cipher:.2f}")
    for client in CLIENTS:
        line = f"CPU s/run       : {client:8} client {summary[client]['client_cpu_s']}"
        if "host_cpu_s" in summary[client]:
            line += f", host {summary[client]['host_cpu_s']}"
        print(line)
    print(
        f"upload heap peak: {peak:.1f} MiB (in flight: {sftp.UPLOAD_REQUESTS} x {sftp.UPLOAD_BLOCK} B)"
    )
    record = {
        "size_bytes": size,
        "runs": args.runs,
        "host": "in-process" if args.in_process else "worker process",
        "profile": "fast",
        "sink_threshold": SINK_THRESHOLD,
        "upload_block": sftp.UPLOAD_BLOCK,
        "upload_requests": sftp.UPLOAD_REQUESTS,
        **summary,
        "ratio": round(ratio, 3),
        "ratio_same_cipher": round(same_cipher, 3),
        # getattr: the benchmark also runs against a checkout from before the cipher choice
        "wmco_cipher": getattr(ssh, "ENCRYPTION_ALGS", ["asyncssh default"])[0],
        "uploads_timed": args.runs * len(CLIENTS),
        "sftp_sessions": sessions,
        "put_file_heap_peak_mib": round(peak, 2),
        "asyncssh": asyncssh.__version__,
        "openssh": _openssh_version(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sftp.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out / 'sftp.json'}")
    return 0


def main() -> None:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="file size in MB (10^6 bytes)")
    parser.add_argument("--runs", type=int, default=3, help="uploads per client")
    parser.add_argument("--port", type=int, default=0, help="sshd port (0: a free one)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="write OUT/sftp.json")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the simulated host in this process (it then shares a core with put_file)",
    )
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
