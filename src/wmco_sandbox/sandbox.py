"""A whole cluster on one machine: real control plane, simulated cloud and hosts, the real operator.

:class:`Sandbox` starts, in order:

1. the real control plane (:mod:`wmco_sandbox.controlplane`), the cluster side of the network
   profile and the simulated Machine API with the simulated cloud (:mod:`wmco_sandbox.cloud`):
   the cluster as it is before anyone installs the operator;
2. the operator's install manifests, built with kustomize from ``deploy/`` as users build them
   (``ovn-hybrid``: ``overlays/openshift``; ``hostprocess``: ``overlays/kubernetes`` with the
   ``machine-api`` component, since the sandbox runs its simulated Machine API either way) and
   applied with server-side apply, minus the Deployment and the metrics Service; the payload (the
   real one ``make payload`` built, or a generated one: :mod:`wmco_sandbox.payloads`), and the
   private key Secret ``cloud-private-key``;
3. the operator itself, as its own process (``wmco run``) with the Deployment's environment,
   authenticated with its ServiceAccount's token, so it has exactly the rights the built
   manifests give it, never admin; the sandbox is up once it has written the user-data Secret.

Then :meth:`Sandbox.add_listed_hosts` boots "bring your own host" instances with the operator's
user data and lists them in ``windows-instances``, and :meth:`Sandbox.apply_machineset` creates or
scales a Windows MachineSet. Leaving the context stops everything it started, in reverse order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event, Node, Secret
from lightkube.types import PatchType

from wmco import names
from wmco.payload import manifest as payload_manifest
from wmco_sandbox import cloud as cloud_mod
from wmco_sandbox import controlplane as cp
from wmco_sandbox import deploy, rekey
from wmco_sandbox.machineapi import MachineAPI, MachineSet
from wmco_sandbox.machineapi import cloud as machine_cloud
from wmco_sandbox.netsim import hostprocess, ovn
from wmco_sandbox.winhost.core import profile as winhost_profile

log = logging.getLogger(__name__)

OVN_HYBRID = "ovn-hybrid"
HOSTPROCESS = "hostprocess"
NETWORK_PROFILES = (OVN_HYBRID, HOSTPROCESS)
"""How the sandbox's cluster gives Windows pods a network (the operator detects which)."""
KUBELET_CA_NAMESPACE = "openshift-kube-apiserver-operator"
KUBELET_CA_CONFIGMAP = "kube-apiserver-to-kubelet-client-ca"
MACHINESET_NAME = "winworker"
CLUSTER_ID = "wmco-sandbox"


class SandboxError(RuntimeError):
    """A sandbox step did not hold (the message says which)."""


def machineset_manifest(name: str, replicas: int, year: str) -> dict[str, Any]:
    """A Windows MachineSet shaped like the reference operator's examples."""
    selector = {
        "machine.openshift.io/cluster-api-cluster": CLUSTER_ID,
        "machine.openshift.io/cluster-api-machineset": name,
    }
    return {
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "MachineSet",
        "metadata": {
            "name": name,
            "namespace": names.MACHINE_API_NAMESPACE,
            "labels": {"machine.openshift.io/cluster-api-cluster": CLUSTER_ID},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": {
                        **selector,
                        "machine.openshift.io/cluster-api-machine-role": "worker",
                        "machine.openshift.io/cluster-api-machine-type": "worker",
                        names.MACHINE_OS_ID_LABEL: names.MACHINE_OS_ID_WINDOWS,
                    }
                },
                "spec": {
                    "metadata": {"labels": {names.WORKER_ROLE_LABEL: ""}},
                    "providerSpec": {
                        "value": {
                            "apiVersion": "machine.openshift.io/v1beta1",
                            "kind": "SandboxMachineProviderConfig",
                            "image": f"windows-server-{year}-datacenter",
                            "instanceType": "sandbox.large",
                            "zone": "sandbox-a",
                            "userDataSecret": {"name": names.USER_DATA_SECRET},
                            "credentialsSecret": {"name": "sandbox-cloud-credentials"},
                        }
                    },
                },
            },
        },
    }


def generate_private_key_pem() -> bytes:
    """A fresh ed25519 private key in OpenSSH format (what users often have)."""
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


class OperatorProcess:
    """``wmco run`` in its own process group, logging to a file."""

    def __init__(self, kubeconfig: Path, env: dict[str, str], log_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the operator (again)."""
        with self.log_path.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wmco", "run", "--kubeconfig", str(self.kubeconfig)],
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the operator at once (SIGKILL), as a crash or an OOM kill would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the operator gracefully, then forcibly."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class Sandbox:
    """The whole sandbox as one async context manager."""

    def __init__(
        self,
        state_dir: Path,
        *,
        windows_year: str = "2022",
        ssh_port: int = 10022,
        operator_env: dict[str, str] | None = None,
        reboot_seconds: float = 1.0,
        network_profile: str = OVN_HYBRID,
        payload_dir: Path | None = None,
        host_profile: str = "fast",
        host_provider: machine_cloud.HostProvider | None = None,
    ) -> None:
        """Describe a sandbox; nothing starts before ``async with``.

        Args:
            state_dir: Where the control plane, logs, kubeconfigs and state go.
            windows_year: Windows Server release of the hosts.
            ssh_port: The hosts' SSH port.
            operator_env: Extra ``WMCO_*`` settings for the operator.
            reboot_seconds: How long a simulated reboot takes.
            network_profile: ``ovn-hybrid`` or ``hostprocess``.
            payload_dir: A payload folder (``manifest.json`` and files) for the operator to copy
                to hosts; ``None`` generates a small fake one in ``state_dir``.
            host_profile: How long things take on the hosts (``fast``, ``realistic``); a
                profile other than ``fast`` also sets the reboot time.
            host_provider: Where the Machine API boots hosts instead of the in-process cloud
                (e.g. :class:`wmco_sandbox.fleetproc.ProcessFleet`, hosts in other processes).

        Raises:
            SandboxError: An unknown network or host profile.
        """
        if network_profile not in NETWORK_PROFILES:
            raise SandboxError(
                f"network profile {network_profile!r} is not one of {', '.join(NETWORK_PROFILES)}"
            )
        self.network_profile = network_profile
        self.state_dir = state_dir.resolve()
        self.windows_year = windows_year
        self.ssh_port = ssh_port
        self.operator_env = operator_env or {}
        self.payload_dir = payload_dir
        self.plane = cp.ControlPlane(state_dir=self.state_dir / "controlplane")
        try:
            timings = winhost_profile.named(host_profile)
        except ValueError as exc:
            raise SandboxError(str(exc)) from None
        if timings is not winhost_profile.FAST:
            reboot_seconds = timings.reboot
        self.cloud = cloud_mod.SimulatedCloud(
            ssh_port=ssh_port, reboot_seconds=reboot_seconds, profile=timings
        )
        self.host_provider: machine_cloud.HostProvider = host_provider or self.cloud
        self.client: AsyncClient | None = None
        self.machine_api: MachineAPI | None = None
        self.operator: OperatorProcess | None = None
        self.manifests: list[deploy.Manifest] = []
        self.private_key_pem = b""
        self.started = time.monotonic()
        self._stack = contextlib.AsyncExitStack()

    @property
    def kube(self) -> AsyncClient:
        """The admin client."""
        if self.client is None:
            raise SandboxError("the sandbox is not running")
        return self.client

    @property
    def private_key_file(self) -> Path:
        """The private key of ``cloud-private-key`` (``DIR/ssh/private-key.pem``, mode 0600).

        ``ssh -i`` it to log in to a host; ``wmco sandbox rotate-key`` replaces it.
        """
        return rekey.key_path(self.state_dir)

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig users get (``DIR/kubeconfig``)."""
        return self.state_dir / "kubeconfig"

    async def __aenter__(self) -> Self:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("ready", "hosts.json", rekey.KEY_DIR + "/" + rekey.PREVIOUS_KEY_FILE):
            (self.state_dir / stale).unlink(missing_ok=True)
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _start(self) -> None:
        self.plane.start()
        shutil.copy(self.plane.kubeconfig, self.kubeconfig)
        self.client = AsyncClient(
            config=KubeConfig.from_file(self.kubeconfig), field_manager="wmco-sandbox"
        )
        await self._start_network()
        self.machine_api = MachineAPI(
            self.kube, self.host_provider, names.MACHINE_API_NAMESPACE, resync=2.0
        )
        await self.machine_api.__aenter__()
        self.manifests = await asyncio.to_thread(self.install_manifests)
        await asyncio.to_thread(
            deploy.apply,
            self.plane.kubeconfig,
            deploy.without(self.manifests, ("Deployment", "Service")),
        )
        payload_dir = self.payload_dir
        if payload_dir is None:
            payload_dir = self.state_dir / "payload"
            payload_manifest.generate_test_payload(payload_dir, version="sandbox")
        self.private_key_pem = generate_private_key_pem()
        rekey.write_key(self.private_key_file, self.private_key_pem)
        await self.kube.create(
            Secret(
                metadata=ObjectMeta(
                    name=names.PRIVATE_KEY_SECRET, namespace=names.OPERATOR_NAMESPACE
                ),
                data={
                    names.PRIVATE_KEY_SECRET_KEY: base64.b64encode(self.private_key_pem).decode()
                },
            )
        )
        self.operator = OperatorProcess(
            deploy.token_kubeconfig(
                self.plane,
                deploy.operator_namespace(self.manifests),
                self.state_dir / "operator.kubeconfig",
            ),
            self._operator_env(payload_dir),
            self.state_dir / "operator.log",
        )
        self.operator.start()
        # Ready when the operator is: a Machine made before the user-data Secret exists fails for
        # good (as with the real Machine API), so no MachineSet may come earlier.
        await self.user_data(timeout=120.0)

    def install_manifests(self) -> list[deploy.Manifest]:
        """The operator's install manifests for this sandbox's kind of cluster, built."""
        if self.network_profile == OVN_HYBRID:
            return deploy.build(deploy.OPENSHIFT)
        return deploy.build(deploy.KUBERNETES, components=(deploy.MACHINE_API_COMPONENT,))

    async def _start_network(self) -> None:
        """The cluster side of the network profile, before any Windows host exists.

        ``ovn-hybrid`` makes the cluster look like OpenShift with OVN-Kubernetes' hybrid overlay:
        the network operator config, ovnkube's subnet allocator, and the
        kube-apiserver-to-kubelet client CA bundle OpenShift publishes. ``hostprocess`` is plain
        Kubernetes with a CNI whose Windows agent is a HostProcess DaemonSet.
        """
        if self.network_profile == OVN_HYBRID:
            config = ovn.network_config(
                cluster_network=cp.CLUSTER_CIDR, service_network=cp.SERVICE_CIDR
            )
            await ovn.install_network_config(self.kube, config)
            allocator = ovn.HybridOverlaySubnetAllocator(self.kube, resync=2.0)
            await self._stack.enter_async_context(allocator)
            await self._apply(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": KUBELET_CA_NAMESPACE},
                },
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": KUBELET_CA_CONFIGMAP, "namespace": KUBELET_CA_NAMESPACE},
                    "data": {"ca-bundle.crt": self.plane.kubelet_client_ca_pem.decode()},
                },
            )
            return
        await self._apply(hostprocess.namespace(), hostprocess.daemonset())
        self.cloud.container_behaviours[hostprocess.IMAGE_NAME] = hostprocess.flannel_behaviour(
            self.kube, service_cidr=cp.SERVICE_CIDR
        )

    async def _apply(self, *manifests: dict[str, Any]) -> None:
        """Apply manifests as admin with kubectl (server-side), in order."""
        for manifest in manifests:
            await asyncio.to_thread(
                self.plane.kubectl,
                "apply",
                "--server-side",
                "--field-manager=wmco-sandbox",
                "-f",
                "-",
                stdin=json.dumps(manifest),
            )

    def _operator_env(self, payload_dir: Path) -> dict[str, str]:
        """The Deployment's environment, then what differs for a local process in the sandbox."""
        env = deploy.operator_env(self.manifests)
        env |= {
            # What the pod would get from its fieldRefs.
            "WMCO_NAMESPACE": deploy.operator_namespace(self.manifests),
            "POD_NAME": "sandbox-operator",
            # operator.log is read by people and tests.
            "WMCO_LOG_FORMAT": "text",
            "WMCO_SSH_PORT": str(self.ssh_port),
            "WMCO_PAYLOAD_DIR": str(payload_dir),
            "WMCO_SERVICE_CIDR": cp.SERVICE_CIDR,
            "WMCO_PROBE_BIND_ADDRESS": f"127.0.0.1:{cp.free_port()}",
            "WMCO_SSH_RETRY_INTERVAL": "0.5",
            "WMCO_SSH_CONNECT_TIMEOUT": "5",
            "WMCO_SSH_BOOT_DEADLINE": "120",
            "WMCO_NODE_READY_TIMEOUT": "120",
            "WMCO_DRAIN_TIMEOUT": "60",
            "WMCO_RETRY_MAX": "10",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(self.operator_env)
        return env

    async def close(self) -> None:
        """Stop the operator, the Machine API, every host and the control plane."""
        if self.operator is not None:
            await asyncio.to_thread(self.operator.stop)
        if self.machine_api is not None:
            with contextlib.suppress(Exception):
                await self.machine_api.__aexit__(None, None, None)
            self.machine_api = None
        await self.cloud.close()
        with contextlib.suppress(Exception):
            await self._stack.aclose()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
            self.client = None
        self.plane.stop()
        (self.state_dir / "ready").unlink(missing_ok=True)

    # ------------------------------------------------------------------------------- scenario

    async def user_data(self, timeout: float = 60.0) -> str:
        """Wait for the operator to write the user-data Secret, and return its script."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                secret = await self.kube.get(
                    Secret, names.USER_DATA_SECRET, namespace=names.MACHINE_API_NAMESPACE
                )
                data = (secret.data or {}).get(names.USER_DATA_SECRET_KEY)
                if data:
                    return base64.b64decode(data).decode()
            self.check_operator()
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"the operator did not write the user-data Secret in {timeout:.0f}s"
                )
            await asyncio.sleep(0.3)

    def check_operator(self) -> None:
        """Fail loudly if the operator process died."""
        if (
            self.operator is not None
            and self.operator.proc is not None
            and not self.operator.running
        ):
            tail = (self.state_dir / "operator.log").read_text(errors="replace")[-2000:]
            raise SandboxError(f"the operator exited ({self.operator.proc.returncode}):\n{tail}")

    async def add_listed_hosts(self, count: int) -> list[cloud_mod.SimHost]:
        """Boot ``count`` hosts with the user data and list them in ``windows-instances``."""
        if count <= 0:
            return []
        script = await self.user_data()
        first = sum(1 for h in self.cloud.hosts.values() if h.origin is cloud_mod.Origin.CONFIGMAP)
        booted = await asyncio.gather(
            *(
                self.cloud.boot_listed(f"byoh-{i}", user_data=script, year=self.windows_year)
                for i in range(first, first + count)
            )
        )
        entries = {sim.host.address: "username=Administrator" for sim in booted}
        await self.set_listed_entries(entries)
        return list(booted)

    async def set_listed_entries(self, entries: dict[str, str]) -> None:
        """Merge ``entries`` into ``windows-instances`` (a ``None`` value removes an entry)."""
        existing = await self._instances_configmap()
        if existing is None:
            await self.kube.create(
                ConfigMap(
                    metadata=ObjectMeta(
                        name=names.INSTANCES_CONFIGMAP, namespace=names.OPERATOR_NAMESPACE
                    ),
                    data={k: v for k, v in entries.items() if v is not None},
                )
            )
            return
        await self.kube.patch(
            ConfigMap,
            names.INSTANCES_CONFIGMAP,
            {"data": entries},
            namespace=names.OPERATOR_NAMESPACE,
            patch_type=PatchType.MERGE,
        )

    async def _instances_configmap(self) -> ConfigMap | None:
        try:
            return await self.kube.get(
                ConfigMap, names.INSTANCES_CONFIGMAP, namespace=names.OPERATOR_NAMESPACE
            )
        except Exception:
            return None

    async def apply_machineset(self, replicas: int, name: str = MACHINESET_NAME) -> None:
        """Create the Windows MachineSet, or scale it to ``replicas``."""
        try:
            await self.kube.get(MachineSet, name, namespace=names.MACHINE_API_NAMESPACE)
        except Exception:
            await self.kube.create(
                MachineSet.from_dict(machineset_manifest(name, replicas, self.windows_year))
            )
            return
        await self.kube.patch(
            MachineSet,
            name,
            {"spec": {"replicas": replicas}},
            namespace=names.MACHINE_API_NAMESPACE,
            patch_type=PatchType.MERGE,
        )

    async def windows_nodes(self) -> list[Node]:
        """Every Windows node of the cluster."""
        return [
            node
            async for node in self.kube.list(Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS})
        ]

    async def operator_events(self) -> list[Event]:
        """The Events in the operator's and the Machine API's namespaces (for the progress view)."""
        events: list[Event] = []
        for namespace in (names.OPERATOR_NAMESPACE, names.MACHINE_API_NAMESPACE):
            events += [event async for event in self.kube.list(Event, namespace=namespace)]
        return events

    async def wait_for(
        self,
        check: Callable[[], Awaitable[bool]],
        what: str,
        timeout: float,
        on_tick: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Poll ``check`` until true; fail with ``what`` after ``timeout`` or if the operator died."""
        deadline = time.monotonic() + timeout
        while not await check():
            self.check_operator()
            if on_tick is not None:
                await on_tick()
            if time.monotonic() > deadline:
                raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what}")
            await asyncio.sleep(0.5)

    def write_hosts(self) -> Path:
        """Write ``DIR/hosts.json`` describing every simulated host."""
        path = self.state_dir / "hosts.json"
        hosts = [sim.describe() for sim in self.cloud.hosts.values()]
        path.write_text(json.dumps(hosts, indent=2) + "\n")
        return path
