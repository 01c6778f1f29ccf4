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
