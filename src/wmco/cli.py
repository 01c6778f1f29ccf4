"""The `wmco` command line.

The operator's own commands live here. Developer tools that are not part of the operator (the local
control plane and sandbox in `wmco_sandbox`) plug in through the `wmco.commands` entry-point group, so
the operator never imports the sandbox and an operator image without it still works.
"""

from __future__ import annotations

import importlib.metadata
import platform

import click

import wmco

ENTRY_POINT_GROUP = "wmco.commands"


class _PluginGroup(click.Group):
    """A click group that also lists the commands other installed packages register."""

    def _plugins(self) -> dict[str, importlib.metadata.EntryPoint]:
        return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        plugin = self._plugins().get(cmd_name)
        if plugin is None:
            return None
        loaded = plugin.load()
        if not isinstance(loaded, click.Command):
            raise click.ClickException(f"entry point {plugin.value} is not a click command")
        return loaded


@click.group(cls=_PluginGroup)
def main() -> None:
    """Windows Machine Config Operator: Windows Server VMs as Kubernetes worker nodes."""


@main.command()
def version() -> None:
    """Print the operator's version."""
    click.echo(f"wmco {wmco.__version__} (Python {platform.python_version()})")


@main.command()
@click.option(
    "--kubeconfig", envvar="KUBECONFIG", default=None, help="Kubeconfig (default: in-cluster)."
)
@click.option("--namespace", help="Operator namespace [WMCO_NAMESPACE, WATCH_NAMESPACE].")
@click.option("--machine-api-namespace", help="Namespace of Machines [WMCO_MACHINE_API_NAMESPACE].")
@click.option("--ssh-port", type=int, help="sshd port on Windows hosts [WMCO_SSH_PORT].")
@click.option("--concurrency", type=int, help="Hosts configured at once [WMCO_CONCURRENCY].")
@click.option(
    "--payload-dir", type=click.Path(file_okay=False), help="Payload folder [WMCO_PAYLOAD_DIR]."
)
@click.option("--api-server-url", help="API server URL for kubelets [WMCO_API_SERVER_URL].")
@click.option("--probe-bind-address", help="host:port of /healthz, /readyz, /metrics.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="[WMCO_LOG_FORMAT]")
@click.option(
    "--network-profile",
    type=click.Choice(["auto", "ovn-hybrid", "hostprocess"]),
    help="How pods get their network [WMCO_NETWORK_PROFILE].",
)
@click.option("--leader-elect/--no-leader-elect", default=None, help="[WMCO_LEADER_ELECTION]")
def run(kubeconfig: str | None, **flags: object) -> None:
    """Run the operator. Flags override WMCO_* environment variables, which override defaults."""
    import asyncio
    import dataclasses
    import pathlib

    from wmco import logs
    from wmco import operator as operator_mod
    from wmco import settings as settings_mod
    from wmco.runtime import leader

    try:
        settings = settings_mod.Settings.from_env()
        overrides = {
            ("leader_election" if key == "leader_elect" else key): value
            for key, value in flags.items()
            if value is not None
        }
        if "payload_dir" in overrides:
            overrides["payload_dir"] = pathlib.Path(str(overrides["payload_dir"]))
        if "log_format" in overrides:
            overrides["log_format"] = settings_mod.LogFormat(str(overrides["log_format"]))
        if "network_profile" in overrides:
            overrides["network_profile"] = settings_mod.NetworkProfile(
                str(overrides["network_profile"])
            )
        settings = dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]
    except settings_mod.SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    logs.configure(settings.log_format, settings.log_level)
    try:
        asyncio.run(operator_mod.run(settings, kubeconfig=kubeconfig))
    except operator_mod.StartupError as exc:
        raise click.ClickException(str(exc)) from exc
    except leader.LeadershipLost:
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass
