r"""The simulated ``windows_exporter.exe`` 0.30: kingpin flags, exporter-toolkit TLS, ``/metrics``.

Started by the SCM (image ``windows_exporter``), it goes through ``cmd/windows_exporter/main.go``
in order, and a failure exits it (the SCM then marks the service STOPPED and applies recovery):

1. **Flags** (kingpin): an unknown one is ``unknown long flag '--x'``, a missing value
   ``expected argument for flag '--x'`` (``"Failed to parse CLI args"``); the start fails.
2. **Collectors**: ``--collectors.enabled`` (``[defaults]`` expands) must name collectors that
   exist (``couldn't enable collectors`` err=``unknown collector x``); the start fails. Of the
   real ones, the nine the operator enables are simulated (:mod:`.exportermetrics`); another
   real one fails the start as "not simulated".
3. **Serving**: ``--web.listen-address`` (``:9182``); then the web config
   (:mod:`.webconfig`): a bad one ends the process with ``"Failed to start windows_exporter"``
   and exporter-toolkit's error; none, or one without TLS fields, serves plain HTTP.

While it runs it listens on the host's address **only while the host firewall lets inbound TCP
reach the port** (the simulation binds and unbinds as rules change, like the kubelet's API; the
real exporter always listens and the firewall drops the packets). Each connection reads the web
config and the certificate again (the toolkit's ``GetConfigForClient``), so a rotated
certificate is served on the next connection; a config broken since start-up fails that
handshake (``http: TLS handshake error``). Plain HTTP sent to the TLS port gets Go's answer,
``400 Bad Request`` ``Client sent an HTTP request to an HTTPS server.``. ``GET /metrics``
(``--telemetry.path``) answers the exposition text (gzip when asked), ``/health`` a JSON status;
anything else ``404 page not found``. Logs go to ``--log.file`` (logfmt, as promslog writes them)
and the service log.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import gzip
import json
import time
from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from wmco_sandbox.winhost.agents import exportermetrics, webconfig
from wmco_sandbox.winhost.core.processes import Process, ProgramEnvironment, ProgramStartError
from wmco_sandbox.winhost.kubelet import tlsconn

__all__ = ["ExporterExit", "SimulatedWindowsExporter", "exporter_factory", "factory_with"]

VERSION: Final = "0.30.5"
DEFAULT_COLLECTORS: Final = "cpu,cs,memory,logical_disk,physical_disk,net,os,service,system"
_REAL: Final = (
    "ad adcs adfs cache container cpu cpu_info cs dfsr dhcp diskdrive dns exchange filetime "
    "fsrmquota hyperv iis license logical_disk logon memory mscluster msmq mssql net netframework "
    "nps os pagefile performancecounter physical_disk printer process remote_fx scheduled_task "
    "service smb smbclient smtp system tcp terminal_services textfile thermalzone time udp "
    "update vmware"
)
REAL_COLLECTORS: Final = frozenset(_REAL.split(" "))
"""Every collector windows_exporter v0.30.5 has."""

_STRING, _BOOL, _STRINGS = "string", "bool", "strings"
_FLAGS: Final = {
    "config.file": _STRING, "config.file.insecure-skip-verify": _BOOL,
    "web.listen-address": _STRINGS, "web.config.file": _STRING, "telemetry.path": _STRING,
    "web.disable-exporter-metrics": _BOOL, "collectors.enabled": _STRING,
    "scrape.timeout-margin": _STRING, "debug.enabled": _BOOL, "process.priority": _STRING,
    "process.memory-limit": _STRING, "log.level": _STRING, "log.format": _STRING,
    "log.file": _STRING, "help": _BOOL, "version": _BOOL,
    "collector.service.include": _STRING, "collector.service.exclude": _STRING,
    "collector.logical_disk.volume-include": _STRING,
    "collector.logical_disk.volume-exclude": _STRING,
    "collector.net.nic-include": _STRING, "collector.net.nic-exclude": _STRING,
    "collector.net.enabled": _STRING,
}  # fmt: skip
"""The flags of windows_exporter v0.30.5 that matter here (global, logging, web, and the
enabled collectors' own)."""
_LEVELS: Final = ("debug", "info", "warn", "error")
_BIND_IN_USE: Final = (
    "bind: Only one usage of each socket address (protocol/network address/port) is normally "
    "permitted."
)
_HTTP_PREFIXES: Final = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
_PLAIN_TO_TLS: Final = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
_TEXT_FORMAT: Final = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
_TLS_VERSIONS: Final = {0x0301: SSL.TLS1_VERSION, 0x0302: SSL.TLS1_1_VERSION,
                        0x0303: SSL.TLS1_2_VERSION, 0x0304: SSL.TLS1_3_VERSION}  # fmt: skip


class ExporterExit(Exception):
    """windows_exporter stops; the message is what it logs last."""


def parse_flags(argv: list[str]) -> dict[str, list[str]]:
    """Kingpin's parsing of the flags windows_exporter defines.

    Raises:
        ExporterExit: With kingpin's error text.
    """
    values: dict[str, list[str]] = {}
    args = argv[1:]
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("--"):
            if token.startswith("-") and len(token) > 1:
                raise ExporterExit(f"unknown short flag '-{token[1]}'")
            raise ExporterExit(f"unexpected {token}")
        name, eq, value = token[2:].partition("=")
        kind = _FLAGS.get(name)
        if kind is None and name.startswith("no-") and _FLAGS.get(name[3:]) == _BOOL:
            name, kind, value, eq = name[3:], _BOOL, "false", "="
        if kind is None:
            raise ExporterExit(f"unknown long flag '--{name}'")
        if kind == _BOOL:
            value = value if eq else "true"
        elif not eq:
            if i >= len(args):
                raise ExporterExit(f"expected argument for flag '--{name}'")
            value = args[i]
            i += 1
        values.setdefault(name, []).append(value)
    return values


def enabled_collectors(flag: str) -> list[str]:
    """``--collectors.enabled`` expanded (``[defaults]``) and de-duplicated in order.

    Raises:
        ExporterExit: An unknown collector.
    """
    names: list[str] = []
    for name in flag.replace("[defaults]", DEFAULT_COLLECTORS).split(","):
        if name not in names:
            names.append(name)
    for name in names:
        if name not in REAL_COLLECTORS:
            raise ExporterExit(f"couldn't enable collectors: unknown collector {name}")
        if name not in exportermetrics.COLLECTORS:
            raise ExporterExit(f"collector {name}: not simulated (docs/windows-surface.md)")
    return names


class SimulatedWindowsExporter:
    """A simulated ``windows_exporter.exe`` (implements ``Process``).

    Args:
        argv: The program's argv.
        env: The host seen by the program.
        poll: Seconds between two looks at the firewall.

    Attributes:
        listening: Whether the port is bound now.
        tls: Whether it serves HTTPS (known once the web config was read).
    """

    def __init__(self, argv: list[str], env: ProgramEnvironment, *, poll: float) -> None:
        self._argv = list(argv)
        self._env = env
        self._poll = poll
        self._task: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._log_file: str | None = None
        self.listening = False
        self.tls = False

    # ------------------------------------------------------------------------------ logging

    def log(self, level: str, message: str, **fields: str) -> None:
        """One promslog (logfmt) line, to the service log and ``--log.file``."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        extra = "".join(f" {key}={json.dumps(value)}" for key, value in fields.items())
        self._write(f"time={now} level={level} msg={json.dumps(message)}{extra}")

    def _write(self, line: str) -> None:
        self._env.log(line)
        if self._log_file:
            with contextlib.suppress(Exception):
                old = self._env.read_file(self._log_file) or b""
                self._env.write_file(self._log_file, old + line.encode() + b"\n")

    # ---------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Parse flags and collectors (a mistake fails the start); serving starts after."""
        try:
            self._flags = parse_flags(self._argv)
        except ExporterExit as err:
            self._env.log(f'level=ERROR msg="Failed to parse CLI args" err="{err}"')
            raise ProgramStartError(str(err)) from None
        log_file = self._last("log.file", "eventlog")
        self._log_file = None if log_file in ("stdout", "stderr", "eventlog") else log_file
        level = self._last("log.level", "info")
        if level not in _LEVELS:
            message = f"unrecognized log level {level}"
            self._env.log(f'level=ERROR msg="Failed to parse CLI args" err="{message}"')
            raise ProgramStartError(message)
        try:
            self.collectors = enabled_collectors(
                self._last("collectors.enabled", DEFAULT_COLLECTORS)
            )
        except ExporterExit as err:
            text = str(err)
            message, _, detail = text.partition(": ")
            self.log("ERROR", message, err=detail)
            raise ProgramStartError(text) from None
        if "os" in self.collectors:
            self.log(
                "WARN",
                "The os collect holds a number of deprecated metrics and will be removed mid "
                "2025. See https://github.com/prometheus-community/windows_exporter/pull/1596 "
                "for more information.",
                collector="os",
            )
        self.log("INFO", "Running as NT AUTHORITY\\SYSTEM")
        self.log("INFO", "Enabled collectors: " + ", ".join(self.collectors))
        self.log("INFO", "starting windows_exporter in 41.2ms", version=VERSION, branch="HEAD")
        self._task = asyncio.get_running_loop().create_task(self._main())

    def _last(self, name: str, default: str) -> str:
        return (self._flags.get(name) or [default])[-1]

    async def stop(self) -> None:
        """Stop at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()

    @property
    def port(self) -> int:
        """The port of ``--web.listen-address``."""
        address = self._last("web.listen-address", ":9182")
        return int(address.rpartition(":")[2])

    def _config(self) -> webconfig.WebConfig:
        path = self._last("web.config.file", "")
        if not path:
            return webconfig.WebConfig(tls=None, http2=False)

        def exists(folder: str) -> bool:
            return self._env.disk.get(folder) is not None

        return webconfig.load(path, self._env.read_file, exists)

    async def _main(self) -> None:
        address = f"[::]:{self.port}"
        try:
            config = self._config()
        except webconfig.WebConfigError as err:
            self.log("INFO", "Listening on", address=address)
            self.log("ERROR", "Failed to start windows_exporter", err=str(err))
            self._env.exited(1, f"Failed to start windows_exporter: {err}")
            return
        self.tls = config.tls is not None
        self.log("INFO", "Listening on", address=address)
        if self.tls:
            self.log("INFO", "TLS is enabled.", http2=str(config.http2).lower(), address=address)
        else:
            self.log("INFO", "TLS is disabled.", http2="false", address=address)
        try:
            while True:
                allowed = self._env.firewall_allows(self.port)
                if allowed and self._server is None:
                    await self._listen()
                elif not allowed and self._server is not None:
                    await self._close()
                await asyncio.sleep(self._poll)
        except ExporterExit as err:
            self.log("ERROR", "Failed to start windows_exporter", err=str(err))
            self._env.exited(1, f"Failed to start windows_exporter: {err}")
        finally:
            await self._close()

    async def _listen(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._handle, host=self._env.facts.address, port=self.port, reuse_address=True
            )
        except OSError:
            raise ExporterExit(f"listen tcp :{self.port}: {_BIND_IN_USE}") from None
        self.listening = True

    async def _close(self) -> None:
        server, self._server = self._server, None
        self.listening = False
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    # ----------------------------------------------------------------------------- serving

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if peer else "unknown"
        try:
            first = await reader.read(65536)
            if not first:
                return
            try:
                config = self._config()
            except webconfig.WebConfigError as err:
                self.log("ERROR", f"http: TLS handshake error from {remote}: {err}")
                return
            if config.tls is None:
                raw = await self._read_request(reader, first)
                writer.write(self._answer(raw, config))
                await writer.drain()
                return
            if first[0] != 0x16:
                if first[:5] in _HTTP_PREFIXES:
                    writer.write(_PLAIN_TO_TLS)
                    await writer.drain()
                return
            await self._serve_tls(reader, writer, first, config, remote)
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve_tls(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        first: bytes,
        config: webconfig.WebConfig,
        remote: str,
    ) -> None:
        material = config.tls
        assert material is not None
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(_TLS_VERSIONS[material.min_version])
        context.set_max_proto_version(_TLS_VERSIONS[material.max_version])
        context.use_certificate(material.cert_chain[0])
        for extra in material.cert_chain[1:]:
            context.add_extra_chain_cert(extra)
        context.use_privatekey(_load_key(material.key_pem))
        stream = tlsconn.TlsStream(context, reader, writer, initial=first)
        try:
            await stream.handshake()
            raw = await stream.read_until(b"\r\n\r\n")
            await stream.write(self._answer(raw, config))
        except tlsconn.TlsError as err:
            self.log("ERROR", f"http: TLS handshake error from {remote}: {err}")
        finally:
            await stream.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader, first: bytes) -> bytes:
        raw = first
        while b"\r\n\r\n" not in raw and len(raw) < 65536:
            chunk = await reader.read(65536)
            if not chunk:
                break
            raw += chunk
        return raw

    def _answer(self, raw: bytes, config: webconfig.WebConfig) -> bytes:
        head, _, _ = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            return _response(400, b"400 Bad Request", "text/plain; charset=utf-8", config)
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        path = target.split("?", 1)[0]
        telemetry = self._last("telemetry.path", "/metrics")
        if path not in (telemetry, "/health", "/version"):
            return _response(404, b"404 page not found\n", "text/plain; charset=utf-8", config)
        if method not in ("GET", "HEAD"):
            return _response(
                405, b"Method Not Allowed\n", "text/plain; charset=utf-8", config, allow="GET, HEAD"
            )
        if path == "/health":
            return _response(200, b'{"status":"ok"}', "application/json", config)
        if path == "/version":
            body = json.dumps(
                {"version": VERSION, "revision": "unknown", "branch": "HEAD"}
            ).encode()
            return _response(200, body, "application/json", config)
        text = exportermetrics.render(
            exportermetrics.collect(self._view(), self.collectors, VERSION, self._write)
        ).encode()
        encoding = None
        if "gzip" in headers.get("accept-encoding", ""):
            text, encoding = gzip.compress(text), "gzip"
        return _response(200, text, _TEXT_FORMAT, config, encoding=encoding)

    def _view(self) -> exportermetrics.HostView:
        env = self._env
        facts = env.facts
        build = facts.windows_build.rsplit(".", 1)[-1]
        revision = facts.kernel_version.rsplit(".", 1)[-1]
        cri = env.cri()
        containers = tuple(
            (c.container_id, c.started_at) for c in (cri.containers() if cri else [])
        )
        disk = env.disk
        size = disk.capacity if disk.capacity is not None else 136_363_114_496
        return exportermetrics.HostView(
            now=time.time(),
            boot_time=env.boot_time,
            hostname=facts.hostname,
            address=facts.address,
            product=facts.os_image,
            build=build,
            revision=int(revision) if revision.isdigit() else 0,
            disk_size=size,
            disk_used=int(disk.used) + 14 * 1024**3,
            services=tuple(
                exportermetrics.ServiceView(
                    s.name, s.display_name, s.state, s.start_type, s.bin_path, s.pid, s.started_at
                )
                for s in env.services()
            ),
            containers=containers,
            hns_endpoints=len(env.hns.endpoints),
        )


def _load_key(pem: bytes) -> tlsconn.ServingKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, tlsconn.ServingKey):
        raise tlsconn.TlsError("the serving key is neither ECDSA nor RSA")
    return key


def _response(
    code: int,
    body: bytes,
    content_type: str,
    config: webconfig.WebConfig,
    *,
    allow: str | None = None,
    encoding: str | None = None,
) -> bytes:
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
    head = [f"HTTP/1.1 {code} {reasons.get(code, 'Error')}", f"Content-Type: {content_type}"]
    head += [f"{name}: {value}" for name, value in config.headers]
    if allow:
        head.append(f"Allow: {allow}")
    if encoding:
        head.append(f"Content-Encoding: {encoding}")
    if code != 200:
        head.append("X-Content-Type-Options: nosniff")
    head += [
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def factory_with(*, poll: float = 0.5) -> Callable[[list[str], ProgramEnvironment], Process]:
    """A windows_exporter program factory with the given firewall poll (tests shorten it)."""

    def factory(argv: list[str], env: ProgramEnvironment) -> Process:
        return SimulatedWindowsExporter(argv, env, poll=poll)

    return factory


exporter_factory = factory_with()
"""The default factory, registered by the host under ``windows_exporter``."""
