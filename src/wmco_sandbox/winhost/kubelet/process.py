r"""The simulated Windows kubelet: joins a real Kubernetes API server as a real kubelet does.

The host's service control manager starts the ``kubelet`` service by calling
:func:`kubelet_factory` with the argv from the service's binPath and a narrow view of the host
(:class:`~wmco_sandbox.winhost.kubelet_api.KubeletEnvironment`). What follows mirrors
``kubelet.exe`` v1.36 on Windows Server (reference: ``kubelet-windows.md``):

``start()`` (synchronous checks; a wrong setup raises ``KubeletConfigError`` and logs why)
    Flags and the ``--config`` KubeletConfiguration are resolved (``kubelet.options``). If the
    ``--kubeconfig`` has no usable client certificate, the bootstrap kubeconfig is loaded and the
    kubelet immediately writes a ``--kubeconfig`` pointing at
    ``<cert-dir>\kubelet-client-current.pem``, which does not exist yet.

The main task (everything a kubelet only finds out while running)
    1. *TLS bootstrap* with the bootstrap token (``kubelet_certmanager``): a client CSR waits
       until someone approves it and the controller-manager signs it. No certificate after
       ``client_cert_timeout`` (5 min) while the API server answers: the kubelet exits
       (``env.exited(1, ...)``).
    2. From then on every request uses the node identity (``system:node:<name>``), so the Node
       authorizer and NodeRestriction apply. Concurrently, in one task group: the Lease and the
       node status (``kubelet_heartbeat``), the serving certificate, the pod worker
       (``kubelet_pods``), the kubelet API on port 10250 (``kubelet_server``) and the client
       certificate's rotation. A rotation ends the group and
       starts it again with the new certificate, as a real kubelet closes all its connections.

``stop()`` cancels every task at once (no further heartbeat) and closes the HTTP clients. A
crash of any loop ends the process as a Go panic would: ``env.exited(2, ...)``.

The decisions live in pure modules (``options``, ``node``, ``pki``,
``kubelet_kubeconfig``); this module and the loops are thin asynchronous shells around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Mapping
from typing import Any, Final, NoReturn

import httpx2
from lightkube import AsyncClient
from lightkube.config.client_adapter import AsyncClient as raw_async_client
from lightkube.config.client_adapter import ConnectionParams

from wmco_sandbox.winhost.core import klog
from wmco_sandbox.winhost.core.processes import (
    KubeletConfigError,
    KubeletEnvironment,
    KubeletProcess,
)
from wmco_sandbox.winhost.kubelet import certmanager as kubelet_certmanager
from wmco_sandbox.winhost.kubelet import context as kubelet_context
from wmco_sandbox.winhost.kubelet import heartbeat as kubelet_heartbeat
from wmco_sandbox.winhost.kubelet import kubeconfig as kubelet_kubeconfig
from wmco_sandbox.winhost.kubelet import node as kubelet_node
from wmco_sandbox.winhost.kubelet import options as kubelet_options
from wmco_sandbox.winhost.kubelet import pki as kubelet_pki
from wmco_sandbox.winhost.kubelet import pods as kubelet_pods
from wmco_sandbox.winhost.kubelet import server as kubelet_server

__all__ = ["KubeletPhase", "SimulatedKubelet", "factory_with", "kubelet_factory"]

DEFAULT_CONTAINERD_VERSION: Final = "1.7.27"
DEFAULT_CAPACITY: Final[Mapping[str, str]] = {
    "cpu": "4",
    "memory": "16776692Ki",
    "ephemeral-storage": "133156860Ki",
}


class KubeletPhase(enum.Enum):
    """Where the simulated kubelet is in its life."""

    CREATED = "Created"
    BOOTSTRAPPING = "Bootstrapping"  # waiting for a client certificate
    REGISTERING = "Registering"
    RUNNING = "Running"  # Node registered, heartbeats flowing
    STANDALONE = "Standalone"  # no --kubeconfig: no API server
    STOPPED = "Stopped"
    EXITED = "Exited"


class SimulatedKubelet:
    """A simulated ``kubelet.exe`` (implements ``KubeletProcess``).

    Args:
        argv: The service's argument vector (with or without the program path).
        env: The host seen by the kubelet.
        lease_renew_interval: Seconds between Lease renewals (default ``0.25 x
            nodeLeaseDurationSeconds`` = 10 s).
        status_interval: Seconds between node status computations (default
            ``nodeStatusUpdateFrequency`` = 10 s).
        runtime_check_interval: Seconds between checks of the CRI status (and of the firewall
            for the kubelet API); a change triggers an immediate status update.
        client_cert_timeout: Exit when no client certificate was obtained for this long while
            the API server answers (the kubelet's 5-minute rule).
        kubelet_version: ``nodeInfo.kubeletVersion`` (default: the version the image was built
            at, from its Go build information; for an image without one, the API server's).
        containerd_version: The containerd version (``nodeInfo.containerRuntimeVersion``).
        capacity: ``cpu``, ``memory`` and ``ephemeral-storage`` capacity of the host.
        boot_id: ``nodeInfo.bootID``.
        backoff_base: First retry delay of the certificate managers (2 s; 5 doublings).
        client_rotation_after: Rotate the client certificate this many seconds after it was
            obtained (default: at a random point in 70-90 % of its lifetime), when
            ``rotateCertificates`` is on.
        pod_retry_interval: Seconds before a pod that could not start is synced again.
        bootstrap_delay: Seconds the TLS bootstrap takes before the client CSR is sent.
        registration_delay: Seconds before the Node is registered.

    Attributes:
        phase: Where the kubelet is in its life.
        options: The resolved options (after ``start()``).
        registered: Set once the Node is registered.
        server: The kubelet API server (after the TLS bootstrap).
    """

    def __init__(
        self,
        argv: list[str],
        env: KubeletEnvironment,
        *,
        lease_renew_interval: float | None = None,
        status_interval: float | None = None,
        runtime_check_interval: float = 1.0,
        client_cert_timeout: float = 300.0,
        kubelet_version: str | None = None,
        containerd_version: str = DEFAULT_CONTAINERD_VERSION,
        capacity: Mapping[str, str] | None = None,
        boot_id: str = "1",
        backoff_base: float = 2.0,
        client_rotation_after: float | None = None,
        pod_retry_interval: float = 10.0,
        bootstrap_delay: float = 0.0,
        registration_delay: float = 0.0,
    ) -> None:
        self._argv = list(argv)
        self._bootstrap_delay = bootstrap_delay
        self._registration_delay = registration_delay
        self._env = env
        self._lease_renew_interval = lease_renew_interval
        self._status_interval = status_interval
        self._runtime_check_interval = runtime_check_interval
        self._client_cert_timeout = client_cert_timeout
        self._backoff_base = backoff_base
        self._client_rotation_after = client_rotation_after
        self._pod_retry_interval = pod_retry_interval
        self._kubelet_version = kubelet_version
        self._containerd_version = containerd_version
        self._capacity = dict(capacity or DEFAULT_CAPACITY)
        self._boot_id = boot_id

        self.phase = KubeletPhase.CREATED
        self.options: kubelet_options.KubeletOptions | None = None
        self.registered = asyncio.Event()
        self._log = klog.Klog(env.log, verbosity=0)
        self._kubelet: kubelet_context.Kubelet | None = None
        self._client_certs: kubelet_certmanager.ClientCertificateManager | None = None
        self._serving_certs: kubelet_certmanager.ServingCertificateManager | None = None
        self._bootstrap: kubelet_kubeconfig.ResolvedKubeconfig | None = None
        self._credentials: kubelet_kubeconfig.ResolvedKubeconfig | None = None
        self._client_bundle: kubelet_pki.CertBundle | None = None
        self._clients: list[AsyncClient] = []
        self._raw_clients: list[httpx2.AsyncClient] = []
        self._main: asyncio.Task[None] | None = None
        self.server: kubelet_server.KubeletServer | None = None

    # ----------------------------------------------------------------------------- observing

    @property
    def node_name(self) -> str | None:
        """The node name, once ``start()`` resolved it."""
        return self.options.node_name if self.options else None

    @property
    def client_csr_name(self) -> str | None:
        """The name of the last client CSR this kubelet created (``None`` if none)."""
        return self._client_certs.csr_name if self._client_certs else None

    @property
    def serving_csr_name(self) -> str | None:
        """The name of the last serving CSR this kubelet created (``None`` if none)."""
        return self._serving_certs.csr_name if self._serving_certs else None

    @property
    def serving_certificate_ready(self) -> asyncio.Event:
        """Set once a serving certificate is stored (never, without ``serverTLSBootstrap``)."""
        if self._serving_certs is None:
            raise RuntimeError("the kubelet has not been started")
        return self._serving_certs.ready

    # ---------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Check the command line and files, then run the kubelet in the background.

        Raises:
            KubeletConfigError: When a real kubelet would refuse to start (the reason is also
                written to the host's kubelet log).
        """
        if self.phase is not KubeletPhase.CREATED:
            raise RuntimeError("a SimulatedKubelet can be started once")
        try:
            opts = kubelet_options.resolve_options(
                self._argv, hostname=self._env.facts.hostname, read_file=self._env.read_file
            )
        except kubelet_options.OptionsError as err:
            self._fail_start(f"command failed: {err}")
        self.options = opts
        self._log.verbosity = opts.verbosity
        if self._kubelet_version is None:
            self._kubelet_version = self._image_version()
        timings = kubelet_context.Timings(
            lease_renew_interval=self._lease_renew_interval or 0.25 * opts.lease_duration_seconds,
            status_interval=self._status_interval or opts.status_update_frequency,
            runtime_check_interval=self._runtime_check_interval,
            client_cert_timeout=self._client_cert_timeout,
            backoff_base=self._backoff_base,
            client_rotation_after=self._client_rotation_after,
            pod_retry_interval=self._pod_retry_interval,
            bootstrap_delay=self._bootstrap_delay,
            registration_delay=self._registration_delay,
        )
        state = kubelet_context.NodeState(registered=self.registered)
        self._kubelet = kubelet_context.Kubelet(self._env, opts, timings, self._log, state)
        self._client_certs = kubelet_certmanager.ClientCertificateManager(self._kubelet)
        self._serving_certs = kubelet_certmanager.ServingCertificateManager(self._kubelet)
        for name, value in kubelet_options.parse_flags(self._argv).items():
            self._log.info("flags.go", f'FLAG: --{name}="{value}"', v=1)
        for warning in opts.warnings:
            self._log.warning("server.go", warning)
        if opts.kubeconfig is None:
            self._log.info(
                "kubelet.go", "No API server defined - no node status update will be sent"
            )
            self.phase = KubeletPhase.STANDALONE
            return
        self._prepare_credentials(opts)
        self._main = asyncio.create_task(self._run(), name=f"kubelet-{opts.node_name}")

    def _image_version(self) -> str | None:
        """The version a real kubelet image was built at (its ``k8s.io/kubernetes`` module).

        ``hack/payload/build.sh`` stamps ``gitVersion`` with exactly that version. ``None`` for
        an image without Go build information (a fake binary): the API server's is used then.
        """
        image = self._argv[0] if self._argv and not self._argv[0].startswith("-") else ""
        info = self._env.disk.build_info(image) if image else None
        module = info.module("k8s.io/kubernetes") if info is not None else None
        return module.effective.version if module is not None else None

    def _fail_start(self, message: str) -> NoReturn:
        self._log.error("run.go", message)
        self.phase = KubeletPhase.EXITED
        raise KubeletConfigError(message)

    def _prepare_credentials(self, opts: kubelet_options.KubeletOptions) -> None:
        """Use a valid ``--kubeconfig`` as it is, or load the bootstrap kubeconfig."""
        assert opts.kubeconfig is not None
        try:
            current = kubelet_kubeconfig.resolve_kubeconfig(opts.kubeconfig, self._env.read_file)
        except kubelet_kubeconfig.KubeconfigError as err:
            current, reason = None, str(err)
        else:
            reason = "no valid client certificate"
        now = kubelet_context.utcnow()
        if current and current.client and kubelet_pki.still_valid(current.client.cert_pem, now):
            self._log.info(
                "bootstrap.go",
                f'"Kubeconfig exists and is valid, skipping bootstrap" path="{opts.kubeconfig}"',
                v=2,
            )
            self._credentials, self._client_bundle = current, current.client
            return
        if opts.bootstrap_kubeconfig is None:
            if current is None:
                self._fail_start(f"failed to run Kubelet: invalid kubeconfig: {reason}")
            self._credentials = current  # no bootstrap: the kubeconfig is used as it is
            return
        self._log.info(
            "bootstrap.go",
            '"Using bootstrap kubeconfig to generate TLS client cert, key and kubeconfig file" '
            f'reason="{reason}"',
            v=2,
        )
        try:
            bootstrap = kubelet_kubeconfig.resolve_kubeconfig(
                opts.bootstrap_kubeconfig, self._env.read_file
            )
        except kubelet_kubeconfig.KubeconfigError as err:
            self._fail_start(f"failed to run Kubelet: unable to load bootstrap kubeconfig: {err}")
        self._bootstrap = bootstrap
        cert_file = kubelet_options.win_join(
            opts.cert_dir, f"{kubelet_certmanager.CLIENT_PREFIX}-current.pem"
        )
        self._env.write_file(
            opts.kubeconfig, kubelet_kubeconfig.kubelet_kubeconfig(bootstrap, cert_file)
        )

    async def stop(self) -> None:
        """Stop at once: no heartbeat is sent after this returns; HTTP clients are closed."""
        main, self._main = self._main, None
        if main is not None and main is not asyncio.current_task():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await main
        await self._close_clients()
        if self.phase is not KubeletPhase.EXITED:
            self.phase = KubeletPhase.STOPPED

    # ---------------------------------------------------------------------------- clients

    def _client(
        self,
        resolved: kubelet_kubeconfig.ResolvedKubeconfig,
        bundle: kubelet_pki.CertBundle | None,
    ) -> tuple[AsyncClient, httpx2.AsyncClient]:
        client = kubelet_kubeconfig.make_client(resolved, bundle)
        self._clients.append(client)
        single = kubelet_kubeconfig.lightkube_config(resolved, bundle).get()
        assert single is not None
        raw = raw_async_client(
            single, ConnectionParams(trust_env=False, timeout=httpx2.Timeout(10.0))
        )
        self._raw_clients.append(raw)
        return client, raw

    async def _close_clients(self) -> None:
        clients, self._clients = self._clients, []
        raws, self._raw_clients = self._raw_clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        for raw in raws:
            with contextlib.suppress(Exception):
                await raw.aclose()

    # ---------------------------------------------------------------------------- main task

    async def _run(self) -> None:
        try:
            assert self._kubelet is not None
            await self._run_until_exit(self._kubelet)
        except* kubelet_context.KubeletExit as group:
            first = group.exceptions[0]
            assert isinstance(first, kubelet_context.KubeletExit)
            self._exit(first.code, first.reason)
        except* Exception as group:  # a crashed loop ends the process, as a panic would
            self._exit(2, f"panic: {group.exceptions[0]!r}")
        if self.phase is KubeletPhase.EXITED:
            await self._close_clients()

    async def _run_until_exit(self, kubelet: kubelet_context.Kubelet) -> None:
        assert self._client_certs is not None and self._serving_certs is not None
        if self._bootstrap is not None:
            self.phase = KubeletPhase.BOOTSTRAPPING
            client, raw = self._client(self._bootstrap, None)
            self._client_bundle = await self._client_certs.bootstrap(client, raw)
            self._credentials = self._bootstrap
            await self._close_clients()
        assert self._credentials is not None
        lease = kubelet_heartbeat.LeaseController(kubelet)
        pods = kubelet_pods.PodWorker(kubelet)
        self.server = kubelet_server.KubeletServer(kubelet)
        status: kubelet_heartbeat.NodeStatusController | None = None
        while True:  # one round per client certificate: a rotation closes every connection
            client, raw = self._client(self._credentials, self._client_bundle)
            if self._kubelet_version is None:
                self._kubelet_version = await self._server_version(raw)
                self._log.info(
                    "server.go", f'"Kubelet version" kubeletVersion="{self._kubelet_version}"'
                )
            host = self._host_view()
            status = status or kubelet_heartbeat.NodeStatusController(kubelet, host)
            if not self.registered.is_set():
                self.phase = KubeletPhase.REGISTERING
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(lease.run(client), name="node-lease")
                    group.create_task(self.server.run(client), name="kubelet-server")
                    group.create_task(self._node(kubelet, client, host, status, pods, group))
                    if self._client_bundle is not None:
                        group.create_task(self._client_certs.run(self._client_bundle, client, raw))
            except* kubelet_context.Rotated as rotated:
                new = rotated.exceptions[0]
                assert isinstance(new, kubelet_context.Rotated)
                self._client_bundle = new.bundle
                await self._close_clients()

    async def _node(
        self,
        kubelet: kubelet_context.Kubelet,
        client: AsyncClient,
        host: kubelet_node.HostView,
        status: kubelet_heartbeat.NodeStatusController,
        pods: kubelet_pods.PodWorker,
        group: asyncio.TaskGroup,
    ) -> None:
        """Register once, then run the status loop; pods and serving cert start after it."""
        opts = kubelet.opts
        if not self.registered.is_set():
            if opts.register_node:
                await status.register(client)
            self._log.info(
                "kubelet_node_status.go", f'"Successfully registered node" node="{opts.node_name}"'
            )
            self.registered.set()
        self.phase = KubeletPhase.RUNNING
        group.create_task(pods.run(client), name="pods")
        if (
            opts.server_tls_bootstrap
            and self._serving_certs
            and not self._serving_certs.ready.is_set()
        ):
            group.create_task(self._serving_certs.run(client, host), name="serving-cert")
        await status.run(client)

    def _exit(self, code: int, reason: str) -> None:
        self._log.error("server.go", reason)
        self.phase = KubeletPhase.EXITED
        self._main = None
        self._env.exited(code, reason)

    def _host_view(self) -> kubelet_node.HostView:
        facts = self._env.facts
        return kubelet_node.HostView(
            hostname=facts.hostname,
            address=facts.address,
            windows_build=facts.windows_build,
            os_image=facts.os_image,
            kernel_version=facts.kernel_version,
            kubelet_version=self._kubelet_version or "v0.0.0",
            containerd_version=f"containerd://{self._containerd_version.lstrip('v')}",
            capacity=self._capacity,
            boot_id=self._boot_id,
        )

    async def _server_version(self, raw: httpx2.AsyncClient) -> str:
        delay = 0.2
        while True:
            try:
                response = await raw.get("/version")
                response.raise_for_status()
                return str(response.json()["gitVersion"])
            except (httpx2.HTTPError, KeyError, ValueError) as err:
                self._log.error("server.go", f'"Failed to get the API server version" err="{err}"')
                await asyncio.sleep(delay)
                delay = min(delay * 2, 7.0)


def kubelet_factory(argv: list[str], env: KubeletEnvironment) -> KubeletProcess:
    """Build a simulated kubelet with the real kubelet's timings (the SCM's ``KubeletFactory``).

    Use :func:`factory_with` for other timings (e.g. short intervals in tests and demos).
    """
    return SimulatedKubelet(argv, env)


def factory_with(**options: Any) -> Callable[[list[str], KubeletEnvironment], KubeletProcess]:
    """Return a ``KubeletFactory`` that passes keyword options to :class:`SimulatedKubelet`."""

    def build(argv: list[str], env: KubeletEnvironment) -> KubeletProcess:
        return SimulatedKubelet(argv, env, **options)

    return build
