"""``wmco sandbox up``: start the sandbox, show live progress, keep it up until a signal."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from wmco import names
from wmco_sandbox import payloads
from wmco_sandbox import progress as progress_mod
from wmco_sandbox.sandbox import Sandbox, SandboxError

__all__ = ["SandboxError", "run_up"]


async def run_up(
    state_dir: Path,
    windows_nodes: int,
    byoh_hosts: int,
    year: str,
    network_profile: str,
    payload: payloads.Resolved | None = None,
    host_profile: str = "fast",
) -> None:
    """Start, converge to ``windows_nodes + byoh_hosts`` Ready nodes, then wait for a signal."""
    payload = payload or payloads.resolve(payloads.Choice.GENERATED)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    out = sys.stderr
    out.write(
        f"starting the sandbox in {state_dir} (Windows Server {year}, network {network_profile}, "
        f"host profile {host_profile}) ...\n"
        f"payload: {payload.reason}\n"
    )
    async with Sandbox(
        state_dir,
        windows_year=year,
        network_profile=network_profile,
        payload_dir=payload.directory,
        host_profile=host_profile,
    ) as sandbox:
        out.write(
            f"control plane: {sandbox.plane.server}\nkubeconfig: {sandbox.kubeconfig}\n"
            f"SSH key: {sandbox.private_key_file} (log in: ssh -i {sandbox.private_key_file} "
            "-p <ssh_port> Administrator@<address> <command>, from hosts.json; "
            "a new key: wmco sandbox rotate-key)\n"
        )
        view = progress_mod.ProgressView(out)
        namespaces = (names.OPERATOR_NAMESPACE, names.MACHINE_API_NAMESPACE)
        async with progress_mod.ClusterWatch(sandbox.kube, namespaces) as watch:
            await sandbox.apply_machineset(windows_nodes)
            await sandbox.add_listed_hosts(byoh_hosts)
            expected = windows_nodes + byoh_hosts

            async def tick() -> None:
                view.show(watch.rows(sandbox.cloud.hosts.values()))
                sandbox.write_hosts()

            async def all_ready() -> bool:
                nodes = watch.windows_nodes()
                return len([n for n in nodes if progress_mod.node_ready(n)]) >= expected

            waiter = asyncio.create_task(
                sandbox.wait_for(all_ready, f"{expected} Ready nodes", 600, tick)
            )
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                try:
                    waiter.result()
                    await tick()
                finally:
                    view.close()
                (state_dir / "ready").write_text(sandbox.plane.server + "\n")
                out.write(f"ready: {expected} Windows node(s); Ctrl-C to stop\n")
                await stop.wait()
            else:
                waiter.cancel()
                view.close()
        out.write("stopping the sandbox ...\n")
