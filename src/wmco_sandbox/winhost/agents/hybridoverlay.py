r"""The simulated ``hybrid-overlay-node.exe`` of OVN-Kubernetes' hybrid overlay (Windows side).

What the real node controller does (``go-controller/hybrid-overlay/pkg/controller/
ho_node_windows.go``; ``windows-networking.md`` §1.2 steps 5-6), in the same order and words:

1. Without HNS (the Containers feature) ``hcn.GetSupportedFeatures`` reports no ``HostRoute``
   support and the program exits: ``this version of Windows does not support HostRoute
   policies; ...``.
2. A moment after start (:attr:`base_delay`, in the background) it ensures the persistent base
   network ``BaseOVNKubernetesHybridOverlayNetwork`` (Overlay, ``100.64.0.0/30``, gateway
   ``100.64.0.2``, VSID 4098). Creating it binds the virtual switch: every SSH connection of
   the host drops. After a reboot it is still there, so nothing drops then.
3. It watches its own Node. Whenever the Node carries ``k8s.ovn.org/hybrid-overlay-node-subnet``
   (and an InternalIP) it ensures ``OVNKubernetesHybridOverlayNetwork`` (Overlay,
   ``EnableNonPersistent``, that subnet, gateway = its first address, VSID 4097, a ``HostRoute``
   policy, ``ManagementIP`` = the host address); a network with another prefix or gateway is
   deleted and re-created. Then it sets ``k8s.ovn.org/hybrid-overlay-distributed-router-
   gateway-mac`` to the network's DR MAC (HNS's dash form).

Approximations (docs/windows-surface.md): it authenticates with the node credentials of
``--bootstrap-kubeconfig`` (the kubelet's kubeconfig) instead of bootstrapping its own
``ovnkube-client`` certificate; ``--k8s-apiserver`` and ``--k8s-cacert`` override that file's
server and CA as they do for the real program; remote subnet routes to other nodes (step 6) are
not programmed; the base network is made before the Node is read (the real one reads the Node
first).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
from collections.abc import Callable

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from wmco_sandbox.winhost.agents import flags as agent_flags
from wmco_sandbox.winhost.core import klog
from wmco_sandbox.winhost.core.disk import DiskError
from wmco_sandbox.winhost.core.processes import Process, ProgramEnvironment, ProgramStartError
from wmco_sandbox.winhost.kubelet import kubeconfig as kubelet_kubeconfig
from wmco_sandbox.winhost.network.hns import HnsError, HnsNetwork, HnsSubnet

__all__ = [
    "BASE_NETWORK",
    "DRMAC_ANNOTATION",
    "OVERLAY_NETWORK",
    "SUBNET_ANNOTATION",
    "SimulatedHybridOverlay",
    "factory_with",
    "hybrid_overlay_factory",
]

SUBNET_ANNOTATION = "k8s.ovn.org/hybrid-overlay-node-subnet"
DRMAC_ANNOTATION = "k8s.ovn.org/hybrid-overlay-distributed-router-gateway-mac"
OVERLAY_NETWORK = "OVNKubernetesHybridOverlayNetwork"
BASE_NETWORK = "BaseOVNKubernetesHybridOverlayNetwork"
_BASE_PREFIX, _BASE_GATEWAY = "100.64.0.0/30", "100.64.0.2"
_VNI = 4097
_NO_HOST_ROUTE = (
    "this version of Windows does not support HostRoute policies; network communication between "
    "this node and its pods will not work. HostRoute policies are available as a KB update for "
    "Windows Server 2019 version 1809 and out of the box in Windows Server 2019 version 1903."
)
_FLAGS = frozenset(
    [
        "node",
        "bootstrap-kubeconfig",
        "cert-dir",
        "cert-duration",
        "windows-service",
        "logfile",
        "k8s-apiserver",
        "k8s-cacert",
        "k8s-kubeconfig",
        "k8s-token",
        "loglevel",
        "hybrid-overlay-vxlan-port",
        "config-file",
        "logfile-maxsize",
        "logfile-maxbackups",
        "logfile-maxage",
    ]
)
_BOOLS = frozenset({"windows-service"})


class _Exit(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SimulatedHybridOverlay:
    """A simulated ``hybrid-overlay-node.exe`` (implements ``Process``).

    Args:
        argv: The program's argv.
        env: The host seen by the program.
        base_delay: Seconds between start and the base network's creation.
        retry_interval: Seconds between attempts while credentials or the API are unavailable.

    Attributes:
        subnet: The node subnet the overlay network was last made for.
        node_events: How many watch events of its Node it has handled.
    """

    def __init__(
        self,
        argv: list[str],
        env: ProgramEnvironment,
        *,
        base_delay: float,
        retry_interval: float,
    ) -> None:
        self._argv = list(argv)
        self._env = env
        self.base_delay = base_delay
        self.retry_interval = retry_interval
        self._log = klog.Klog(self._write_line)
        self._task: asyncio.Task[None] | None = None
        self._logfile: str | None = None
        self.subnet: str | None = None
        self.node_events = 0

    # -- process ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Parse the flags (a bad command line fails the start); the work runs in background."""
        try:
            flags = agent_flags.parse_flags(
                self._argv, known=_FLAGS, booleans=_BOOLS, program="hybrid-overlay-node"
            )
        except agent_flags.FlagError as err:
            self._env.log(f"Incorrect Usage: {err}")
            raise ProgramStartError(str(err)) from None
        if not flags.get("node"):
            self._env.log("missing node name; use the 'node' flag")
            raise ProgramStartError("missing node name; use the 'node' flag")
        self._flags = flags
        self._node = flags["node"]
        self._logfile = flags.get("logfile")
        self._task = asyncio.get_running_loop().create_task(self._main())

    async def stop(self) -> None:
        """Stop at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _write_line(self, line: str) -> None:
        self._env.log(line)
        if self._logfile:  # its log library creates the directory
            disk = self._env.disk
            with contextlib.suppress(DiskError):
                disk.mkdir(disk.format(disk.parse(self._logfile)[:-1]))
                disk.append_file(self._logfile, line.encode() + b"\n")

    async def _main(self) -> None:
        try:
            if not self._env.hns.available():
                self._log.fatal("hybrid-overlay-node.go:115", _NO_HOST_ROUTE)
                raise _Exit(_NO_HOST_ROUTE)
            await asyncio.sleep(self.base_delay)
            self._ensure_base()
            await self._watch_node()
        except _Exit as exit_:
            self._env.exited(1, exit_.reason)

    # -- networks -----------------------------------------------------------------------------
    def _valid(self, network: HnsNetwork | None, prefix: str, gateway: str) -> bool:
        if network is None or network.type != "Overlay" or not network.subnets:
            return False
        first = network.subnets[0]
        return first.address_prefix == prefix and first.gateway_address == gateway

    def _ensure(self, name: str, prefix: str, gateway: str) -> HnsNetwork | None:
        """The existing valid network, or None after deleting an invalid one."""
        hns = self._env.hns
        network = hns.network_named(name)
        if self._valid(network, prefix, gateway):
            return network
        if network is not None:
            self._log.info(
                "utils_windows.go:140",
                f"Deleting the existing network '{name}' because it does not match the expected "
                f"address prefix {prefix} and gateway {gateway}",
            )
            with contextlib.suppress(HnsError):
                hns.remove_network(network.id)
        return None

    def _ensure_base(self) -> None:
        if self._ensure(BASE_NETWORK, _BASE_PREFIX, _BASE_GATEWAY) is not None:
            return
        log = self._log
        log.info(
            "ho_node_windows.go:120",
            f"Creating the base overlay network '{BASE_NETWORK}' (VXLAN port = 4789).",
        )
        log.info("ho_node_windows.go:133", "Retrieving routes to cache prior network creation")
        log.info("ho_node_windows.go:138", "Base network creation may take up to a minute to complete...")  # fmt: skip
        try:
            self._env.hns.create_network(
                BASE_NETWORK, "Overlay", [HnsSubnet(_BASE_PREFIX, _BASE_GATEWAY, _VNI + 1)],
                management_ip=self._env.facts.address, persistent=True,
                created_by="hybrid-overlay-node",
            )  # fmt: skip
        except HnsError as err:
            reason = f"unable to create the base overlay network, error: {err}"
            log.fatal("hybrid-overlay-node.go:115", reason)
            raise _Exit(reason) from None
        log.info("ho_node_windows.go:145", "Network created. Repopulating routes")

    def _ensure_overlay(self, prefix: str) -> HnsNetwork | None:
        net = ipaddress.ip_network(prefix, strict=False)
        gateway = str(net.network_address + 1)
        existing = self._ensure(OVERLAY_NETWORK, str(net), gateway)
        if existing is not None:
            self._log.info(
                "ho_node_windows.go:246",
                f"Reusing existing overlay network '{OVERLAY_NETWORK}' (address prefix {net}, "
                f"VXLAN port = 4789) with gateway address: {gateway}.",
            )
            return existing
        self._log.info(
            "ho_node_windows.go:222",
            f"Creating overlay network '{OVERLAY_NETWORK}' (address prefix {net}) with gateway "
            f"address: {gateway}",
        )
        self._log.info("ho_node_windows.go:230", "Network creation may take up to a minute to complete...")  # fmt: skip
        try:
            return self._env.hns.create_network(
                OVERLAY_NETWORK, "Overlay", [HnsSubnet(str(net), gateway, _VNI)],
                management_ip=self._env.facts.address, persistent=False,
                policies=[{"Type": "HostRoute"}], created_by="hybrid-overlay-node",
            )  # fmt: skip
        except HnsError as err:
            self._log.error(
                "node.go:188",
                f"failed to initialize node: unable to create the overlay network, error: {err}",
            )
            return None

    # -- the Node -----------------------------------------------------------------------------
    def _client(self) -> AsyncClient:
        path = self._flags.get("bootstrap-kubeconfig") or self._flags.get("k8s-kubeconfig") or ""
        resolved = kubelet_kubeconfig.resolve_kubeconfig(path, self._env.read_file)
        if resolved.client is None:
            raise kubelet_kubeconfig.KubeconfigError(f"no client certificate in {path} yet")
        server = self._flags.get("k8s-apiserver") or resolved.server
        ca_path = self._flags.get("k8s-cacert")
        ca_pem = self._env.read_file(ca_path) if ca_path else resolved.ca_pem
        if ca_path and ca_pem is None:
            raise kubelet_kubeconfig.KubeconfigError(
                f"open {ca_path}: The system cannot find the file specified."
            )
        resolved = dataclasses.replace(resolved, server=server, ca_pem=ca_pem)
        return kubelet_kubeconfig.make_client(resolved)

    async def _watch_node(self) -> None:
        while True:
            try:
                client = self._client()
            except kubelet_kubeconfig.KubeconfigError as err:
                self._log.error("hybrid-overlay-node.go:98", f"failed to create a client: {err}")
                await asyncio.sleep(self.retry_interval)
                continue
            try:
                async for _event, node in client.watch(Node, fields={"metadata.name": self._node}):
                    await self._on_node(client, node)
            except (ApiError, httpx2.HTTPError, OSError) as err:
                self._log.error(
                    "reflector.go:561", f'"Failed to watch" err="{err}" type="*v1.Node"'
                )
            finally:
                await client.close()
            await asyncio.sleep(self.retry_interval)

    async def _on_node(self, client: AsyncClient, node: Node) -> None:
        self.node_events += 1
        meta = node.metadata
        annotations = (meta.annotations if meta else None) or {}
        raw = annotations.get(SUBNET_ANNOTATION)
        addresses = (node.status.addresses if node.status else None) or []
        if raw is None or not any(a.type == "InternalIP" for a in addresses):
            return
        try:
            prefix = str(ipaddress.ip_network(raw, strict=False))
        except ValueError:
            self._log.error(
                "node.go:180",
                f"failed to parse node {self._node} subnet annotation {raw!r}: invalid CIDR "
                f"address: {raw}",
            )
            return
        network = self._ensure_overlay(prefix)
        if network is None:
            return
        self.subnet = prefix
        mac = network.dr_mac_address
        if mac and annotations.get(DRMAC_ANNOTATION) != mac:
            try:
                await client.patch(
                    Node,
                    self._node,
                    {"metadata": {"annotations": {DRMAC_ANNOTATION: mac}}},
                    patch_type=PatchType.MERGE,
                )
            except (ApiError, httpx2.HTTPError) as err:
                self._log.error(
                    "ho_node_windows.go:270", f"Failed to set DRMAC annotation on node: {err}"
                )


def factory_with(
    *, base_delay: float = 0.3, retry_interval: float = 1.0
) -> Callable[[list[str], ProgramEnvironment], Process]:
    """A hybrid-overlay-node program factory with the given timings (tests shorten them)."""

    def factory(argv: list[str], env: ProgramEnvironment) -> Process:
        return SimulatedHybridOverlay(
            argv, env, base_delay=base_delay, retry_interval=retry_interval
        )

    return factory


hybrid_overlay_factory = factory_with()
"""The default factory, registered by the host under ``hybrid-overlay-node``."""
