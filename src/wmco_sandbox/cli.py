"""`wmco controlplane ...`: developer commands registered through the `wmco.commands` entry point."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from wmco_sandbox import controlplane as cp
from wmco_sandbox import payloads
from wmco_sandbox.winhost.core import profile as winhost_profile


@click.group("controlplane")
def controlplane() -> None:
    """Run the real local Kubernetes control plane (etcd, apiserver, controller-manager, scheduler)."""


@controlplane.command("up")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".controlplane"),
    show_default=True,
    help="Where the PKI, data, logs, `kubeconfig` and `ready` are written.",
)
def up(state_dir: Path) -> None:
    """Start the control plane in the foreground until SIGINT/SIGTERM.

    Writes STATE_DIR/kubeconfig (admin) and then STATE_DIR/ready once the API is usable.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ready = state_dir / "ready"
    ready.unlink(missing_ok=True)
    plane = cp.ControlPlane(state_dir=state_dir.resolve())
    click.echo(f"starting control plane in {state_dir} ...", err=True)
    try:
        plane.start()
    except cp.ControlPlaneError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        (state_dir / "pids.json").write_text(json.dumps(plane.processes()))
        ready.write_text(plane.server + "\n")
        click.echo(f"ready: {plane.server}  kubeconfig: {plane.kubeconfig}", err=True)
        stop.wait()
    finally:
        click.echo("stopping control plane ...", err=True)
        ready.unlink(missing_ok=True)
        plane.stop()


@click.group("sandbox")
def sandbox() -> None:
    """A whole cluster on this machine: real control plane, simulated cloud and Windows hosts."""


BUILD_CHOICE = click.Choice(["2019", "2022", "2025"])
NETWORK_CHOICE = click.Choice(["ovn-hybrid", "hostprocess"])
NETWORK_HELP = (
    "ovn-hybrid: OpenShift with OVN-Kubernetes' hybrid overlay (the operator runs "
    "hybrid-overlay-node and kube-proxy); hostprocess: plain Kubernetes whose CNI runs as a "
    "HostProcess DaemonSet."
)


PAYLOAD_CHOICE = click.Choice([choice.value for choice in payloads.Choice])
PAYLOAD_HELP = (
    "real: the Windows binaries `make payload` builds (built now if missing); generated: small "
    "fake binaries; auto: real when it is built, else generated (the command says which)."
)


def _default_state(sub: str) -> Path:
    return cp.project_root() / ".sandbox" / sub if sub else cp.project_root() / ".sandbox"


@sandbox.command("demo")
@click.option("--windows-build", type=BUILD_CHOICE, default="2022", show_default=True)
@click.option(
    "--network-profile",
    type=NETWORK_CHOICE,
    default="ovn-hybrid",
    show_default=True,
    help=NETWORK_HELP,
)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option(
    "--payload", type=PAYLOAD_CHOICE, default="auto", show_default=True, help=PAYLOAD_HELP
)
def demo(windows_build: str, network_profile: str, state_dir: Path | None, payload: str) -> None:
    """Run the seed's story on the sandbox; exit 0 only if every step held."""
    from wmco_sandbox import demo as demo_mod

    raise SystemExit(
        demo_mod.main(
            state_dir or _default_state("demo"),
            windows_build,
            network_profile,
            payloads.Choice(payload),
        )
    )


@sandbox.command("up")
@click.option("--windows-nodes", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--byoh-hosts", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--windows-build", type=BUILD_CHOICE, default="2022", show_default=True)
@click.option(
    "--network-profile",
    type=NETWORK_CHOICE,
    default="ovn-hybrid",
    show_default=True,
    help=NETWORK_HELP,
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Default: .sandbox/ in the project.",
)
@click.option(
    "--payload", type=PAYLOAD_CHOICE, default="auto", show_default=True, help=PAYLOAD_HELP
)
@click.option(
    "--host-profile",
    type=click.Choice(sorted(winhost_profile.PROFILES)),
    default="fast",
    show_default=True,
    help="How long things take on the simulated hosts: fast (nothing waits) or realistic "
    "(PowerShell start per exec, network round trips, SFTP and disk speed, service starts, "
    "the Containers feature and its reboot; see docs/windows-surface.md).",
)
def up_sandbox(
    windows_nodes: int,
    byoh_hosts: int,
    windows_build: str,
    network_profile: str,
    state_dir: Path | None,
    payload: str,
    host_profile: str,
) -> None:
    """Start the sandbox and keep it up until Ctrl-C/SIGTERM.

    Writes STATE_DIR/kubeconfig, STATE_DIR/hosts.json, then STATE_DIR/ready when every node is Ready.
    """
    import asyncio

    from wmco_sandbox import up as up_mod

    try:
        resolved = payloads.resolve(payloads.Choice(payload))
        asyncio.run(
            up_mod.run_up(
                state_dir or _default_state(""),
                windows_nodes,
                byoh_hosts,
                windows_build,
                network_profile,
                resolved,
                host_profile,
            )
        )
    except (up_mod.SandboxError, payloads.PayloadError) as exc:
        raise click.ClickException(str(exc)) from exc


@sandbox.command("rotate-key")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The running sandbox's DIR (default: .sandbox/ in the project).",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The new private key (default: a new ed25519 key is generated).",
)
@click.option("--timeout", type=float, default=300.0, show_default=True)
@click.option("--wait/--no-wait", default=True, show_default=True)
def rotate_key(state_dir: Path | None, key_file: Path | None, timeout: float, wait: bool) -> None:
    """Give a running sandbox a new SSH key: cloud-private-key changes, the operator re-keys hosts.

    The new key goes to DIR/ssh/private-key.pem, the previous one to
    DIR/ssh/previous-private-key.pem; waits (unless --no-wait) until every Windows node trusts
    the new key and the operator forgot the previous one.
    """
    import asyncio

    from wmco_sandbox import rekey

    try:
        path = asyncio.run(
            rekey.rotate(
                state_dir or _default_state(""),
                key_file.read_bytes() if key_file is not None else None,
                timeout=timeout,
                wait=wait,
                report=lambda line: click.echo(line, err=True),
            )
        )
    except rekey.RotationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(path))
