"""The `wmco` command line.

The operator's own commands live here. Developer tools that are not part of the operator (the local
control plane and sandbox in `wmco_sandbox`) plug in through the `wmco.commands` entry-point group, so
the operator never imports the sandbox and an operator image without it still works.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

import wmco

_T = TypeVar("_T")

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


LOG_SERVICES = ("kubelet", "containerd", "kube-proxy", "hybrid-overlay-node", "windows_exporter")
"""The services ``wmco logs`` reads (``wmco.tools.hostlogs.SERVICE_LOGS``; a test keeps them equal)."""


@main.command()
@click.argument("address")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False),
              help="SSH private key (PEM/OpenSSH). Default: Secret cloud-private-key (needs --kubeconfig).")  # fmt: skip
@click.option("--user", default="Administrator", show_default=True, help="SSH user.")
@click.option("--port", default=22, show_default=True, type=int, help="sshd port.")
@click.option("--kubeconfig", default=None,
              help="Your kubeconfig: enables the clock-skew and API-server-name checks.")  # fmt: skip
@click.option("--namespace", default=None, help="Operator namespace (for the key Secret).")
@click.option("--api-server-url", default=None,
              help="API server URL the kubelet will use (default: the kubeconfig's server).")  # fmt: skip
@click.option("--timeout", default=15.0, show_default=True, help="Seconds to try SSH.")
def preflight(
    address: str,
    key_file: str | None,
    user: str,
    port: int,
    kubeconfig: str | None,
    namespace: str | None,
    api_server_url: str | None,
    timeout: float,
) -> None:
    """Check a Windows host before it joins (read-only); exit 0 when every required check passes."""
    import asyncio
    import pathlib
    import urllib.parse

    from wmco import kube, names
    from wmco.tools import hostaccess
    from wmco.tools import preflight as preflight_mod
    from wmco.windows import sshfailures

    key_pem = pathlib.Path(key_file).read_bytes() if key_file is not None else None

    async def main_() -> int:
        if key_pem is not None:
            key = hostaccess.load_private_key(key_pem)
        elif kubeconfig is not None:
            client = kube.make_client(kubeconfig)
            try:
                key = await hostaccess.cluster_private_key(
                    client, namespace or names.OPERATOR_NAMESPACE
                )
            finally:
                await client.close()
        else:
            raise hostaccess.ToolError("give --key FILE, or --kubeconfig to read cloud-private-key")
        url = api_server_url or (kube.server_url(kubeconfig) if kubeconfig else None)
        api_host = urllib.parse.urlsplit(url).hostname if url else None

        async def clock() -> kube.ServerClock:
            return await kube.server_clock(kubeconfig)

        target = preflight_mod.Target(address, user, port, key, api_host, timeout)
        rows = await preflight_mod.run(target, clock if kubeconfig else None)
        click.echo(preflight_mod.render(rows), nl=False)
        return preflight_mod.exit_code(rows)

    try:
        code = asyncio.run(main_())
    except (hostaccess.ToolError, kube.KubeError, sshfailures.SshError) as exc:
        raise click.ClickException(str(exc)) from exc
    raise SystemExit(code)


def _node_access_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options of the tools that reach configured nodes with the cluster's key and pins."""
    for option in reversed((
        click.option("--kubeconfig", envvar="KUBECONFIG", default=None, help="Your kubeconfig."),
        click.option("--namespace", default=None, help="Operator namespace (for the key Secret)."),
        click.option("--port", default=22, show_default=True, type=int, help="sshd port."),
        click.option("--connect-timeout", default=15.0, show_default=True,
                     help="Seconds to try SSH."),
    )):  # fmt: skip
        command = option(command)
    return command


def _with_cluster(kubeconfig: str | None, work: Callable[[Any], Awaitable[_T]]) -> _T:
    """Run ``work(client)`` with a client of ``kubeconfig``; tool errors end the command."""
    import asyncio

    from wmco import kube
    from wmco.tools import hostaccess

    async def main_() -> _T:
        client = kube.make_client(kubeconfig)
        try:
            return await work(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main_())
    except (hostaccess.ToolError, kube.KubeError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("node")
@click.option("--service", type=click.Choice(LOG_SERVICES), default="kubelet", show_default=True)
@click.option("--since", default=None,
              help="Only lines stamped within this long before the host's current time (90s, "
                   "10m, 1h30m, 2d), read from their klog/RFC 3339 timestamps; applied to the "
                   "--tail lines fetched.")  # fmt: skip
@click.option("--tail", default=1000, show_default=True, type=click.IntRange(min=0),
              help="Lines fetched from the end of the log file (Get-Content -Tail); 0: all.")  # fmt: skip
@_node_access_options
def logs(
    node: str,
    service: str,
    since: str | None,
    tail: int,
    kubeconfig: str | None,
    namespace: str | None,
    port: int,
    connect_timeout: float,
) -> None:
    """Print a Windows node's service log, read over SSH (host key pinned on the Node)."""
    from wmco import names
    from wmco.tools import hostlogs

    try:
        window = hostlogs.parse_duration(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc

    lines = _with_cluster(
        kubeconfig,
        lambda client: hostlogs.node_logs(
            client, node, service, namespace=namespace or names.OPERATOR_NAMESPACE,
            port=port, tail=tail, since=window, connect_timeout=connect_timeout,
        ),
    )  # fmt: skip
    for line in lines:
        click.echo(line)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--concurrency", default=5, show_default=True, type=click.IntRange(min=1),
              help="Nodes collected at once.")  # fmt: skip
@click.option("--tail", default=10000, show_default=True, type=click.IntRange(min=0),
              help="Lines of each log file (0: whole files).")  # fmt: skip
@_node_access_options
def gather(
    directory: str,
    concurrency: int,
    tail: int,
    kubeconfig: str | None,
    namespace: str | None,
    port: int,
    connect_timeout: float,
) -> None:
    """Collect every Windows node's logs, service states and the operator's Events into DIRECTORY."""
    import pathlib

    from wmco import names
    from wmco.tools import gather as gather_mod

    report = _with_cluster(
        kubeconfig,
        lambda client: gather_mod.gather(
            client, pathlib.Path(directory), namespace=namespace or names.OPERATOR_NAMESPACE,
            port=port, concurrency=concurrency, tail=tail, connect_timeout=connect_timeout,
            progress=lambda line: click.echo(line, err=True),
        ),
    )  # fmt: skip
    click.echo(f"wrote {directory} ({len(report.nodes)} nodes, {report.events} events)")
    if report.failed:
        raise click.ClickException(
            f"{len(report.failed)} of {len(report.nodes)} nodes could not be collected: "
            + ", ".join(r.node for r in report.failed)
            + " (see summary.txt)"
        )
