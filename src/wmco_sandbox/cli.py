"""`wmco controlplane ...`: developer commands registered through the `wmco.commands` entry point."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from wmco_sandbox import controlplane as cp


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


@sandbox.command("demo")
def demo() -> None:
    """Start the real control plane, show that it answers, and stop it again."""
    click.echo(
        "Real: etcd, kube-apiserver, kube-controller-manager, kube-scheduler (built from Go modules)."
    )
    try:
        with cp.ControlPlane() as plane:
            click.echo(f"control plane up at {plane.server}")
            click.echo(f"admin kubeconfig: {plane.kubeconfig}")
            click.echo("$ kubectl get --raw /version")
            click.echo(plane.kubectl("get", "--raw", "/version").strip())
            click.echo("stopping the control plane")
    except cp.ControlPlaneError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("demo finished: every step held")
