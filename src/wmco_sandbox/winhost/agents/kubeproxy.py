r"""The simulated ``kube-proxy.exe`` in winkernel (kernelspace) mode.

It starts as a Windows service (RUNNING at once, like ``--windows-service``), then goes through
the checks of the real binary in the real order, and exits on the first that fails, with the
real text in its log (``Machine.service_log``; under ``kube-log-runner`` also the ``-log-file``).
The SCM then applies the service's recovery actions. The order and texts are those of
``cmd/kube-proxy/app`` and ``pkg/proxy/winkernel`` (``NewProxier``, ``getNetworkInfo``,
``syncProxyRules``; ``windows-networking.md`` §1.5, §4):

1. ``--config`` is read and decoded as a ``KubeProxyConfiguration`` (JSON is YAML): a missing
   file, bad YAML, a wrong ``kind``/``apiVersion`` or an unknown feature gate is
   ``"command failed" err="failed complete: ..."``; unknown fields are only a lenient-decoding
   notice, as in kube-proxy.
2. ``mode`` must be ``kernelspace`` or blank (``failed validate: ...``).
3. winkernel: HNS must exist (the Containers feature) and ``winkernel.networkName`` be set.
4. The network is awaited: while no HNS network has that name it logs ``"Unable to find HNS
   Network specified, please check network name and CNI deployment"`` every
   :attr:`SimulatedKubeProxy.network_poll` (1 s) and keeps waiting, as ``getNetworkInfo`` does.
   This is what brings it back after a reboot: the hybrid overlay's network is non-persistent and
   only re-appears once hybrid-overlay-node made it again.
5. On an Overlay network it waits :attr:`SimulatedKubeProxy.overlay_settle` (10 s) and reads the
   network again (``could not find HNS network <name>`` if it went away); then ``enableDSR``
   needs the ``WinDSR`` gate, an Overlay network the ``WinOverlay`` gate (default on) and a
   ``sourceVip`` (``source-vip flag not set``).

Then it proxies. Every sync (``sync_period``): a rewritten ``--config`` file ends it (``content of
the proxy server's configuration file was updated``, as kube-proxy's fsnotify watch does); a
network that vanished or was re-created under another ID is logged (``The HNS network is not
present or has changed since the last sync, please check the CNI deployment``) and adopted at the
next sync; on an Overlay network the ``sourceVip`` endpoint is looked up by address on that
network and CREATED when missing (a local endpoint with that address, as ``newSourceVIP`` does);
a creation HNS refuses (an address outside the subnet, say) is logged each sync as ``"Source Vip
endpoint creation failed"`` and the program keeps running without programming anything.
Approximations (docs/windows-surface.md): it never talks to the API server; the endpoint it
creates is named after its ID (what HNS shows for an endpoint created without a name is
unverified) and has a MAC conjured from its address (real: the host NIC's MAC).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import Callable
from typing import Any

import yaml

from wmco_sandbox.winhost.agents import flags as agent_flags
from wmco_sandbox.winhost.core import klog
from wmco_sandbox.winhost.core.processes import Process, ProgramEnvironment, ProgramStartError
from wmco_sandbox.winhost.network.hns import HnsError, HnsNetwork

__all__ = ["ProxyExit", "SimulatedKubeProxy", "factory_with", "kube_proxy_factory"]

_API_VERSION = "kubeproxy.config.k8s.io/v1alpha1"
_KIND = "KubeProxyConfiguration"
_FIELDS = frozenset(
    [
        "apiVersion",
        "kind",
        "featureGates",
        "clientConnection",
        "hostnameOverride",
        "bindAddress",
        "healthzBindAddress",
        "metricsBindAddress",
        "bindAddressHardFail",
        "enableProfiling",
        "showHiddenMetricsForVersion",
        "mode",
        "iptables",
        "ipvs",
        "nftables",
        "winkernel",
        "detectLocalMode",
        "detectLocal",
        "clusterCIDR",
        "nodePortAddresses",
        "oomScoreAdj",
        "conntrack",
        "configSyncPeriod",
        "portRange",
        "logging",
        "windowsRunAsService",
        "linux",
        "windows",
        "syncPeriod",
        "minSyncPeriod",
        "udpIdleTimeout",
    ]
)
_WINKERNEL_FIELDS = frozenset(
    ["networkName", "sourceVip", "enableDSR", "rootHnsEndpointName", "forwardHealthCheckVip"]
)
_GATES = {  # name -> default (the gates a Windows kube-proxy knows that matter here)
    "WinDSR": False, "WinOverlay": True, "IPv6DualStack": True, "AllAlpha": False,
    "AllBeta": False, "WindowsEndpointSliceProxying": True, "ServiceTrafficDistribution": True,
    "TopologyAwareHints": True, "KubeProxyDrainingTerminatingNodes": True,
}  # fmt: skip
_FLAGS = frozenset(
    [
        "config",
        "windows-service",
        "v",
        "hostname-override",
        "cluster-cidr",
        "proxy-mode",
        "feature-gates",
        "network-name",
        "source-vip",
        "enable-dsr",
        "kubeconfig",
        "master",
        "bind-address",
        "metrics-bind-address",
        "healthz-bind-address",
        "logtostderr",
        "log-file",
    ]
)
_BOOLS = frozenset({"windows-service", "enable-dsr", "logtostderr"})


class ProxyExit(Exception):
    """kube-proxy stops; ``lines`` are what it logs on the way out (klog source, message)."""

    def __init__(self, reason: str, lines: list[tuple[str, str, str]]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lines = lines


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _failed(err: str) -> ProxyExit:
    """A failure before the proxier runs: only cli.Run's line."""
    return ProxyExit(err, [("E", "run.go:72", f'"command failed" err={_quote(err)}')])


def _run_failed(err: str, extra: list[tuple[str, str, str]] | None = None) -> ProxyExit:
    """``opts.Run`` failed: 'Error running ProxyServer', then cli.Run's line."""
    lines = [*(extra or [])]
    lines.append(("E", "server.go:592", f'"Error running ProxyServer" err={_quote(err)}'))
    lines.append(("E", "run.go:72", f'"command failed" err={_quote(err)}'))
    return ProxyExit(err, lines)


def _go_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def load_config(path: str, data: bytes | None) -> tuple[dict[str, Any], list[str]]:
    """Decode a ``--config`` file; return the document and the lenient-decoding notices.

    Raises:
        ProxyExit: What kube-proxy reports for a missing or undecodable file.
    """
    if data is None:
        raise _failed(f"failed complete: open {path}: The system cannot find the file specified.")
    try:
        doc = yaml.safe_load(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        problem = getattr(err, "problem", None) or str(err)
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise _failed(
            f"failed complete: failed to decode: error converting YAML to JSON: yaml: {where}"
            f"{problem}"
        ) from None
    if not isinstance(doc, dict) or "kind" not in doc:
        shown = json.dumps(doc, separators=(",", ":")) if doc is not None else ""
        raise _failed(f"failed complete: failed to decode: Object 'Kind' is missing in '{shown}'")
    if doc.get("apiVersion") != _API_VERSION or doc.get("kind") != _KIND:
        raise _failed(
            f'failed complete: failed to decode: no kind "{doc.get("kind")}" is registered for '
            f'version "{doc.get("apiVersion")}" in scheme '
            '"pkg/proxy/apis/config/scheme/scheme.go:28"'
        )
    for key, kind in (("winkernel", dict), ("featureGates", dict), ("clientConnection", dict),
                      ("mode", str), ("clusterCIDR", str)):  # fmt: skip
        if key in doc and doc[key] is not None and not isinstance(doc[key], kind):
            go = {"winkernel": "v1alpha1.KubeProxyWinkernelConfiguration",
                  "featureGates": "map[string]bool",
                  "clientConnection": "v1alpha1.ClientConnectionConfiguration"}.get(key, "string")  # fmt: skip
            raise _failed(
                f"failed complete: failed to decode: json: cannot unmarshal {_go_type(doc[key])} "
                f"into Go struct field KubeProxyConfiguration.{key} of type {go}"
            )
    unknown = sorted(set(doc) - _FIELDS)
    unknown += sorted(f"winkernel.{k}" for k in set(doc.get("winkernel") or {}) - _WINKERNEL_FIELDS)
    notices = [
        '"Using lenient decoding as strict decoding failed" '
        f'err="strict decoding error: unknown field \\"{name}\\""'
        for name in unknown
    ]
    return doc, notices


def feature_gates(doc: dict[str, Any]) -> dict[str, bool]:
    """The effective feature gates (defaults overlaid with ``featureGates``).

    Raises:
        ProxyExit: An unknown gate or a non-boolean value.
    """
    gates = dict(_GATES)
    for name, value in (doc.get("featureGates") or {}).items():
        if name not in _GATES:
            raise _failed(f"failed complete: unrecognized feature gate: {name}")
        if not isinstance(value, bool):
            raise _failed(f"failed complete: invalid value of {name}: {value}, err: not a bool")
        gates[name] = value
    return gates


class SimulatedKubeProxy:
    r"""A simulated ``kube-proxy.exe`` (implements ``Process``).

    Args:
        argv: The program's argv (``C:\\k\\kube-proxy.exe --config=... --windows-service``).
        env: The host seen by the program.
        sync_period: Seconds between the running checks (config file, network, sourceVip).
        network_poll: Seconds between two looks for a missing network (kube-proxy: 1 s).
        overlay_settle: Seconds it waits on an Overlay network before reading it again
            (kube-proxy: 10 s).

    Attributes:
        running: Set once every check passed (it proxies).
        syncs: How many periodic syncs it did since.
        network_waits: How many times it looked for its network in vain.
        source_vip_created: How many times it created the sourceVip endpoint itself.
    """

    def __init__(
        self,
        argv: list[str],
        env: ProgramEnvironment,
        *,
        sync_period: float,
        network_poll: float = 1.0,
        overlay_settle: float = 10.0,
    ) -> None:
        self._argv = list(argv)
        self._env = env
        self._sync_period = sync_period
        self.network_poll = network_poll
        self.overlay_settle = overlay_settle
        self._log = klog.Klog(env.log)
        self._task: asyncio.Task[None] | None = None
        self._network_id = ""
        self.running = False
        self.syncs = 0
        self.network_waits = 0
        self.source_vip_created = 0

    async def start(self) -> None:
        """Parse the flags (a bad flag fails the start); the checks run right after."""
        try:
            self._flags = agent_flags.parse_flags(
                self._argv, known=_FLAGS, booleans=_BOOLS, program="kube-proxy"
            )
        except agent_flags.FlagError as err:
            self._env.log(f"Error: {err}")
            raise ProgramStartError(str(err)) from None
        with contextlib.suppress(ValueError):
            self._log.verbosity = int(self._flags.get("v", "0"))
        self._task = asyncio.get_running_loop().create_task(self._main())

    async def stop(self) -> None:
        """Stop at once."""
        task, self._task = self._task, None
        self.running = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _write(self, lines: list[tuple[str, str, str]]) -> None:
        for severity, source, message in lines:
            getattr(self._log, {"E": "error", "W": "warning"}.get(severity, "info"))(
                source, message
            )

    async def _main(self) -> None:
        try:
            config_path, data = self._read_config()
            await self._run(config_path, data)
        except ProxyExit as exit_:
            self.running = False
            self._write(exit_.lines)
            self._env.exited(1, exit_.reason)

    def _read_config(self) -> tuple[str | None, bytes | None]:
        path = self._flags.get("config")
        return path, (self._env.read_file(path) if path else None)

    def check_config(
        self, path: str | None, data: bytes | None
    ) -> tuple[dict[str, Any], dict[str, bool], str]:
        """What kube-proxy verifies before it looks for its network.

        Returns:
            The decoded config, the effective feature gates and the network name.

        Raises:
            ProxyExit: The first check that fails, with kube-proxy's lines.
        """
        doc: dict[str, Any] = {"kind": _KIND, "apiVersion": _API_VERSION}
        if path is not None:
            doc, notices = load_config(path, data)
            for notice in notices:
                self._log.info("options.go:590", notice)
        gates = feature_gates(doc)
        mode = doc.get("mode") or ""
        if mode not in ("", "kernelspace"):
            raise _failed(
                f'failed validate: KubeProxyConfiguration.ProxyMode: Invalid value: "{mode}": '
                "must be kernelspace or blank (blank means the most-available proxy [currently "
                "'kernelspace'])"
            )
        cidr = doc.get("clusterCIDR") or ""
        for part in filter(None, cidr.split(",")):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise _failed(
                    f"failed validate: KubeProxyConfiguration.DetectLocal.ClusterCIDRs: Invalid "
                    f'value: "{cidr}": must be a valid CIDR block (e.g. 10.100.0.0/16 or '
                    "fde4:8dba:82e1::/48)"
                ) from None
        if not self._env.hns.available():
            raise _run_failed("Windows kernel is not compatible for Kernel mode")
        winkernel = doc.get("winkernel") or {}
        name = str(winkernel.get("networkName") or "")
        if not name:
            raise _run_failed("Environment variable KUBE_NETWORK and network-flag not initialized")
        return doc, gates, name

    async def _wait_for_network(self, name: str) -> HnsNetwork:
        """``getNetworkInfo``: look every ``network_poll`` until the network exists."""
        while True:
            network = self._env.hns.network_named(name)
            if network is not None:
                return network
            self.network_waits += 1
            self._log.error("hns.go:96", _network_not_found(name))
            await asyncio.sleep(self.network_poll)

    def check_network(
        self, doc: dict[str, Any], gates: dict[str, bool], network: HnsNetwork
    ) -> str | None:
        """The checks of ``NewProxier`` once the network is known; the sourceVip (Overlay only).

        Raises:
            ProxyExit: A gate is off or the sourceVip is not set.
        """
        winkernel = doc.get("winkernel") or {}
        if winkernel.get("enableDSR") and not gates["WinDSR"]:
            raise _run_failed("WinDSR feature gate not enabled")
        if network.type.lower() != "overlay":
            return None
        if not gates["WinOverlay"]:
            raise _run_failed("WinOverlay feature gate not enabled")
        vip = str(winkernel.get("sourceVip") or "")
        if not vip:
            raise _run_failed("source-vip flag not set")
        return vip

    async def _run(self, path: str | None, data: bytes | None) -> None:
        doc, gates, name = self.check_config(path, data)
        self._log.info("server_windows.go:106", '"Using Kernelspace Proxier."')
        network = await self._wait_for_network(name)
        if network.type.lower() == "overlay":
            await asyncio.sleep(self.overlay_settle)
            settled = self._env.hns.network_named(name)
            if settled is None:
                raise _run_failed(f"could not find HNS network {name}")
            network = settled
        self._log.info(
            "proxier.go:708",
            f'"Hns Network loaded" hnsNetworkInfo="{{name:{name} id:{network.id} '
            f'networkType:{network.type}}}"',
            v=1,
        )
        vip = self.check_network(doc, gates, network)
        self._network_id = network.id
        self.running = True
        while True:
            self._sync(name, vip)
            await asyncio.sleep(self._sync_period)
            self.syncs += 1
            current = self._env.read_file(path) if path else None
            if path is not None and current != data:
                raise _run_failed("content of the proxy server's configuration file was updated")

    def _sync(self, name: str, vip: str | None) -> None:
        """One ``syncProxyRules``: the network must be the one loaded; ensure the sourceVip."""
        hns = self._env.hns
        network = hns.network_named(name)
        if network is None or network.id != self._network_id:
            self._log.info(
                "proxier.go:1108",
                '"The HNS network is not present or has changed since the last sync, please '
                f'check the CNI deployment" hnsNetworkName="{name}"',
            )
            if network is not None:
                self._network_id = network.id
            return
        if vip is None:
            return
        if any(e.ip_address == vip for e in hns.endpoints_of(network.id)):
            return
        try:
            endpoint = hns.create_endpoint(network.id, "", ip_address=vip)
        except HnsError as err:
            self._log.error(
                "proxier.go:1185",
                f'"Source Vip endpoint creation failed" err={_quote(_hcn_error(err))}',
            )
            return
        endpoint.name = endpoint.id  # no name given: HNS shows its ID (unverified)
        self.source_vip_created += 1  # createEndpoint logs nothing on success


def _network_not_found(name: str) -> str:
    return (
        '"Unable to find HNS Network specified, please check network name and CNI deployment" '
        f'err="Network name \\"{name}\\" not found" hnsNetworkName="{name}"'
    )


def _hcn_error(err: HnsError) -> str:
    """The ``HcsError`` text hcsshim gives for a failed ``HcnCreateEndpoint``."""
    detail = json.dumps(
        {"Success": False, "Error": f"{err.message} ", "ErrorCode": err.code},
        separators=(",", ":"),
    )
    return f"hcnCreateEndpoint failed in Win32: {err.message} (0x{err.code:x}) {detail}"


def factory_with(
    *, sync_period: float = 1.0, network_poll: float = 1.0, overlay_settle: float = 10.0
) -> Callable[[list[str], ProgramEnvironment], Process]:
    """A kube-proxy program factory with the given timing (tests shorten it)."""

    def factory(argv: list[str], env: ProgramEnvironment) -> Process:
        return SimulatedKubeProxy(
            argv,
            env,
            sync_period=sync_period,
            network_poll=network_poll,
            overlay_settle=overlay_settle,
        )

    return factory


kube_proxy_factory = factory_with()
"""The default factory, registered by the host under ``kube-proxy``."""
