r"""``wmco logs NODE``: a Windows node's service log, read over SSH from the file the service writes.

The services log to files under ``C:\var\log`` (kube-log-runner's ``-log-file`` for the kubelet
and kube-proxy, the programs' own log-file flags for the others; :mod:`wmco.windows.services`).
The tool reads the last ``--tail`` lines of that file with ``Get-Content -Tail`` (one read-only
command; ``--tail 0`` reads the whole file) and, with ``--since``, keeps the lines whose
timestamps are at most that old *by the host's clock* (read with ``Get-Date`` first, so a skewed
host clock does not shift the window). Timestamps understood: klog's ``I1201 18:00:00.000000``
(local time of the host, no year: the most recent such date not in the future), logrus'
``time="<RFC 3339>"`` (containerd) and ``ts=<RFC 3339>`` (windows_exporter). A line without a
timestamp (a continuation) goes with the line before it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Final

from lightkube.resources.core_v1 import Node

from wmco import kube
from wmco.tools import hostaccess
from wmco.windows import answers, layout, preflightanswers, services, ssh, sshfailures, toolcommands

SERVICE_LOGS: Final[Mapping[str, str]] = {
    services.KUBELET: layout.KUBELET_LOG,
    services.CONTAINERD: layout.CONTAINERD_LOG,
    services.KUBE_PROXY: layout.KUBE_PROXY_LOG,
    services.HYBRID_OVERLAY: layout.HYBRID_OVERLAY_LOG,
    services.WINDOWS_EXPORTER: layout.WINDOWS_EXPORTER_LOG,
}
"""The log file of every service the operator installs."""

DEFAULT_TAIL: Final = 1000

_DURATION: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_KLOG: Final = re.compile(r"[IWEF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6})")
_RFC3339: Final = re.compile(
    r'(?:^|\s)(?:time="|ts=)(\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:\d{2}))'
)


def parse_duration(text: str) -> dt.timedelta:
    """Parse ``90s``, ``10m``, ``1h30m``, ``2d``.

    Raises:
        ValueError: Another shape, or zero.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration like 90s, 10m, 1h30m or 2d")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    value = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if not value:
        raise ValueError("the duration must be more than zero")
    return value


def line_time(line: str, host_now: dt.datetime) -> dt.datetime | None:
    """The timestamp of a log line, offset-aware, or ``None`` when it has none.

    Args:
        line: One log line.
        host_now: The host's current time with its UTC offset (klog lines are in that zone).
    """
    klog = _KLOG.match(line)
    if klog is not None:
        month, day, hour, minute, second, micro = (int(g) for g in klog.groups())
        for year in (host_now.year, host_now.year - 1):
            try:
                moment = dt.datetime(
                    year, month, day, hour, minute, second, micro, tzinfo=host_now.tzinfo
                )
            except ValueError:
                continue
            if moment <= host_now + dt.timedelta(days=1):
                return moment
        return None
    stamped = _RFC3339.search(line)
    if stamped is not None:
        text = stamped.group(1).replace("Z", "+00:00")
        base, _, rest = text.partition(".")
        if rest:
            digits = re.match(r"\d+", rest)
            zone = rest[digits.end() :] if digits else rest
            text = f"{base}.{(digits.group(0) if digits else '0')[:6].ljust(6, '0')}{zone}"
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    return None


def since_filter(lines: Iterable[str], cutoff: dt.datetime, host_now: dt.datetime) -> list[str]:
    """Keep lines stamped at or after ``cutoff`` (and the unstamped lines that follow them)."""
    kept: list[str] = []
    keep = False
    for line in lines:
        moment = line_time(line, host_now)
        if moment is not None:
            keep = moment >= cutoff
        if keep:
            kept.append(line)
    return kept


async def read_log(
    host: ssh.WindowsHost,
    service: str,
    *,
    tail: int = DEFAULT_TAIL,
    since: dt.timedelta | None = None,
) -> list[str]:
    """Read one service's log lines from an open host.

    Raises:
        hostaccess.ToolError: Unknown service, no log file, or an unreadable answer.
        sshfailures.SshError: The connection failed.
    """
    path = SERVICE_LOGS.get(service)
    if path is None:
        raise hostaccess.ToolError(f"unknown service {service!r}; one of {', '.join(SERVICE_LOGS)}")
    host_now: dt.datetime | None = None
    if since is not None:
        clock = await host.run(toolcommands.local_time(), what="clock query", timeout=30)
        try:
            host_now = preflightanswers.parse_round_trip_time(clock.stdout)
        except answers.CommandOutputError as exc:
            raise hostaccess.ToolError(f"cannot read the host's clock: {exc}") from None
    result = await host.run(
        toolcommands.read_text_tail(path, tail), what=f"{service} log", timeout=300
    )
    if result.exit_status != 0:
        raise hostaccess.ToolError(
            f"cannot read {path} on {host.address} (exit {result.exit_status}): "
            f"{_first_line(result.stderr)}; is {service} installed and has it started once?"
        )
    lines = result.stdout.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if since is not None and host_now is not None:
        lines = since_filter(lines, host_now - since, host_now)
    return lines


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.split("\n", 1)[0] if stripped else "no error text"


async def node_logs(
    client: kube.Client,
    node_name: str,
    service: str,
    *,
    namespace: str,
    port: int,
    tail: int = DEFAULT_TAIL,
    since: dt.timedelta | None = None,
    connect_timeout: float = hostaccess.DEFAULT_CONNECT_TIMEOUT,
) -> list[str]:
    """Find the node, connect to its host (pinned host key) and read one service's log.

    Raises:
        hostaccess.ToolError: No such node, not a configured Windows node, refused host key,
            unreachable, or no log.
    """
    try:
        node = await kube.get(client, Node, node_name)
    except kube.KubeError as exc:
        raise hostaccess.ToolError(f"cannot read node {node_name}: {exc}") from None
    if node is None:
        raise hostaccess.ToolError(f"node {node_name} not found")
    target = hostaccess.node_target(node)
    key = await hostaccess.cluster_private_key(client, namespace)
    host = hostaccess.open_node(target, key, hostaccess.tool_settings(port, connect_timeout))
    try:
        await hostaccess.connect(host, what=f"node {node_name} ({target.address})")
        return await read_log(host, service, tail=tail, since=since)
    except sshfailures.SshError as exc:
        raise hostaccess.ToolError(str(exc)) from None
    finally:
        await host.close()
