"""Configure ONE Windows instance into a Ready node: an idempotent sequence of resumable steps.

Every step first looks at the host or the cluster and only then changes what differs, so the
sequence can be interrupted anywhere (operator killed, connection dropped, host rebooted) and run
again from the start without harm: files whose SHA-256 already matches are not copied again, the
bootstrap token of the instance is reused while fresh, services already as declared are left
alone, and the Node is the one the instance's kubelet registers under its own host name, so a
second Node never appears.

The steps, in order (:class:`Step`):

1. ``connect``: SSH with key authentication, retried while the host boots, host key pinned on
   first use (:mod:`wmco.nodeconfig.hostkeys`); a changed host key is refused.
2. ``identify``: the host name (the node name) and the Windows build.
3. ``containers-feature``: enable the Containers feature, rebooting when Windows asks for it.
4. ``directories`` and ``payload``: the payload manifest's files, copied only when their hash
   differs (:mod:`wmco.windows.transfer`).
5. ``bootstrap-files``: CA, bootstrap kubeconfig with a per-instance token, kubelet configuration.
6. ``services``: the declarative service list (:mod:`wmco.windows.services`) applied with sc.exe.
7. ``node-ready``: wait for the kubelet to register its Node and report Ready.
8. ``node-metadata``: labels, annotations (version, pub-key-hash, username, pinned host key) and
   removal of the bootstrap token.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import hashlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from lightkube.resources.core_v1 import Node

from wmco import kube, names, userdata
from wmco.nodeconfig import bootstrap, hostkeys
from wmco.payload import manifest as payload_manifest
from wmco.settings import Settings
from wmco.windows import commands, services, ssh, transfer

log = logging.getLogger(__name__)


class Origin(enum.StrEnum):
    """What brought an instance to the operator."""

    MACHINE = "machine"
    BYOH = "byoh"


class Step(enum.StrEnum):
    """The steps of :func:`configure`, in order (used in progress reports and errors)."""

    CONNECT = "connect"
    IDENTIFY = "identify"
    CONTAINERS_FEATURE = "containers-feature"
    DIRECTORIES = "directories"
    PAYLOAD = "payload"
    BOOTSTRAP_FILES = "bootstrap-files"
    SERVICES = "services"
    NODE_READY = "node-ready"
    NODE_METADATA = "node-metadata"
    DONE = "done"


@dataclasses.dataclass(frozen=True, slots=True)
class Instance:
    """One Windows instance to configure.

    Attributes:
        address: IPv4 address or DNS name the operator reaches it at over SSH.
        username: SSH user (an administrator).
        origin: A Machine or the ``windows-instances`` ConfigMap.
        machine: ``<namespace>/<name>`` of the Machine, for Machine-backed instances.
        provider_id: The Machine's ``spec.providerID``, registered by the kubelet.
        ssh_port: Overrides ``settings.ssh_port`` (the sandbox's hosts listen elsewhere).
    """

    address: str
    username: str
    origin: Origin
    machine: str | None = None
    provider_id: str | None = None
    ssh_port: int | None = None

    @property
    def node_ip(self) -> str | None:
        """The address as the node's InternalIP when it is an IPv4 address."""
        try:
            return str(ipaddress.IPv4Address(self.address))
        except ValueError:
            return None


@dataclasses.dataclass(frozen=True, slots=True)
class Inputs:
    """Cluster-wide inputs of the flow, the same for every instance of one reconcile.

    Build it with :meth:`from_key`, which parses the key once and derives its hash.
    """

    settings: Settings
    private_key_pem: bytes = dataclasses.field(repr=False)
    payload: payload_manifest.Manifest
    version: str
    pub_key_hash: str

    @classmethod
    def from_key(
        cls,
        settings: Settings,
        private_key_pem: bytes,
        payload: payload_manifest.Manifest,
        version: str,
    ) -> Inputs:
        """Parse the key once; raise ``userdata.PrivateKeyError`` if it is unusable."""
        key = userdata.load_private_key(private_key_pem)
        return cls(settings, private_key_pem, payload, version, userdata.pub_key_hash(key))


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`configure` did."""

    node_name: str
    files_copied: int
    files_skipped: int
    service_actions: int
    seconds: float


class ConfigurationError(Exception):
    """A step failed; the message says which instance, which step and what to do."""

    def __init__(self, address: str, step: Step, message: str) -> None:
        super().__init__(f"instance {address}: step {step}: {message}")
        self.address = address
        self.step = step


class HostKeyChangedError(ConfigurationError):
    """The instance presented a host key different from the pinned one: refused, not retried."""


Progress = Callable[[Step, str], Awaitable[None]]


async def _no_progress(step: Step, detail: str) -> None:
    return None


def is_up_to_date(node: Node | None, version: str, pub_key_hash: str) -> bool:
    """Whether a node was fully configured by this version with the current key (no SSH needed)."""
    if node is None or node.metadata is None:
        return False
    annotations = node.metadata.annotations or {}
    return (
        annotations.get(names.VERSION_ANNOTATION) == version
        and annotations.get(names.PUB_KEY_HASH_ANNOTATION) == pub_key_hash
    )


def node_is_ready(node: Node | None) -> bool:
    """Whether the node's Ready condition is True."""
    conditions = (node.status.conditions if node and node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def node_addresses(node: Node) -> set[str]:
    """Every address the node reports."""
    return {a.address for a in (node.status.addresses if node.status else None) or []}


def match_node(nodes: Iterable[Node], instance: Instance) -> Node | None:
    """The Node of an instance among ``nodes``: annotated with its address, else reporting it."""
    candidates = list(nodes)
    for node in candidates:
        annotations = (node.metadata.annotations if node.metadata else None) or {}
        if annotations.get(names.INSTANCE_ADDRESS_ANNOTATION) == instance.address:
            return node
    for node in candidates:
        if instance.address in node_addresses(node):
            return node
    return None


async def find_node(client: kube.Client, instance: Instance) -> Node | None:
    """The Node of an instance, read fresh from the API server."""
    result = await kube.list_objects(client, Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS})
    return match_node(result.items, instance)


class _Runner:
    """Runs commands on one host and turns failures into :class:`ConfigurationError`."""

    def __init__(self, host: ssh.WindowsHost, address: str) -> None:
        self.host = host
        self.address = address
        self.step = Step.CONNECT

    async def run(self, command: str, what: str, *, ok: tuple[int, ...] = (0,)) -> ssh.Result:
        try:
            result = await self.host.run(command, what=what)
        except ssh.SshError as exc:
            raise ConfigurationError(self.address, self.step, str(exc)) from None
        if result.exit_status not in ok:
            detail = result.stderr.strip().splitlines()[-1:] or ["no error text"]
            raise ConfigurationError(
                self.address,
                self.step,
                f"{what} failed with exit status {result.exit_status}: {detail[0][:300]}",
            )
        return result


async def _connect(
    client: kube.Client, instance: Instance, inputs: Inputs, node: Node | None
) -> ssh.WindowsHost:
    settings = inputs.settings
    pinned = await hostkeys.pinned(client, settings.namespace, instance.address, node)

    async def on_first_use(key: ssh.HostKey) -> None:
        await hostkeys.remember(client, settings.namespace, instance.address, key)

    try:
        key = ssh.load_ssh_key(inputs.private_key_pem)
    except ssh.SshKeyError as exc:
        raise ConfigurationError(instance.address, Step.CONNECT, str(exc)) from None
    host = ssh.WindowsHost(
        instance.address,
        instance.username,
        key,
        settings=settings,
        pinned_host_key=pinned,
        on_first_use=on_first_use,
        port=instance.ssh_port,
    )
    try:
        await host.connect(within=settings.ssh_boot_deadline)
    except ssh.HostKeyMismatchError as exc:
        raise HostKeyChangedError(
            instance.address,
            Step.CONNECT,
            f"{exc}; if the host was really reinstalled, delete its pinned key (ConfigMap "
            f"{names.SSH_HOST_KEYS_CONFIGMAP} entry or the Node's {names.SSH_HOST_KEY_ANNOTATION} "
            "annotation)",
        ) from None
    except ssh.SshError as exc:
        raise ConfigurationError(instance.address, Step.CONNECT, str(exc)) from None
    return host


async def _reboot(runner: _Runner, settings: Settings) -> None:
    """Restart Windows and reconnect once it answers again."""
    # The connection drops while Restart-Computer runs; that is the expected answer.
    with contextlib.suppress(ssh.SshError):
        await runner.host.run(
            commands.reboot(), what="reboot", timeout=settings.ssh_command_timeout
        )
    await runner.host.close()
    try:
        await runner.host.reconnect(within=settings.ssh_boot_deadline)
    except ssh.SshError as exc:
        raise ConfigurationError(
            runner.address, runner.step, f"host did not come back after reboot: {exc}"
        ) from None


async def _ensure_containers_feature(runner: _Runner, settings: Settings) -> bool:
    """Enable the Containers feature; return whether a reboot was needed."""
    state = commands.parse_feature_state(
        (await runner.run(commands.containers_feature(), "containers feature query")).stdout
    )
    if state is commands.FeatureState.ENABLED:
        return False
    result = await runner.run(commands.enable_containers_feature(), "enable containers feature")
    if (
        commands.parse_restart_needed(result.stdout)
        or state is commands.FeatureState.ENABLE_PENDING
    ):
        await _reboot(runner, settings)
        state = commands.parse_feature_state(
            (await runner.run(commands.containers_feature(), "containers feature query")).stdout
        )
        if state is not commands.FeatureState.ENABLED:
            raise ConfigurationError(
                runner.address, runner.step, f"Containers feature is {state} after a reboot"
            )
        return True
    return False


async def _ensure_content(runner: _Runner, path: str, data: bytes, what: str) -> bool:
    """Write ``data`` to ``path`` unless the host already has exactly that; return if written."""
    if await transfer.remote_sha256(runner.host, path) == hashlib.sha256(data).hexdigest():
        return False
    try:
        await runner.host.put_bytes(data, path, what=what)
    except ssh.SshError as exc:
        raise ConfigurationError(runner.address, runner.step, str(exc)) from None
    return True


async def observe_services(runner: _Runner) -> dict[str, services.ObservedService]:
    """Ask the host about every service the operator may manage."""
    observed: dict[str, services.ObservedService] = {}
    for name in services.ALL_MANAGED_SERVICES:
        qc = await runner.run(
            commands.service_exists(name),
            f"query of service {name}",
            ok=(0, commands.ScExitCode.SERVICE_DOES_NOT_EXIST),
        )
        if qc.exit_status == commands.ScExitCode.SERVICE_DOES_NOT_EXIST:
            observed[name] = services.ObservedService(name=name)
            continue
        query = await runner.run(commands.service_state(name), f"state of service {name}")
        observed[name] = services.ObservedService(
            name=name,
            config=commands.parse_sc_qc(qc.stdout),
            state=commands.parse_sc_query(query.stdout).state,
        )
    return observed


async def _wait_stopped(runner: _Runner, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        query = await runner.run(
            commands.service_state(name),
            f"state of service {name}",
            ok=(0, commands.ScExitCode.SERVICE_DOES_NOT_EXIST),
        )
        if query.exit_status != 0:
            return
        if commands.parse_sc_query(query.stdout).state is commands.ServiceState.STOPPED:
            return
        if time.monotonic() > deadline:
            raise ConfigurationError(
                runner.address, runner.step, f"service {name} did not stop in {timeout:.0f}s"
            )
        await asyncio.sleep(0.5)


async def apply_service_actions(
    runner: _Runner, actions: list[services.ServiceAction], *, stop_timeout: float = 120.0
) -> None:
    """Run a service plan; tolerate the answers that mean "already so"."""
    tolerated: dict[services.ActionKind, tuple[int, ...]] = {
        services.ActionKind.START: (0, commands.ScExitCode.SERVICE_ALREADY_RUNNING),
        services.ActionKind.STOP: (0, commands.ScExitCode.SERVICE_NOT_ACTIVE),
        services.ActionKind.DELETE: (
            0,
            commands.ScExitCode.SERVICE_DOES_NOT_EXIST,
            commands.ScExitCode.SERVICE_MARKED_FOR_DELETE,
        ),
        services.ActionKind.CREATE: (0, commands.ScExitCode.SERVICE_EXISTS),
    }
    for action in actions:
        await runner.run(
            action.command(),
            f"{action.kind} of service {action.service}",
            ok=tolerated.get(action.kind, (0,)),
        )
        if action.kind is services.ActionKind.STOP:
            await _wait_stopped(runner, action.service, stop_timeout)


async def _wait_for_node(
    client: kube.Client, instance: Instance, node_name: str, timeout: float, progress: Progress
) -> Node:
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        node = await kube.get(client, Node, node_name)
        if node is not None and not announced:
            await progress(Step.NODE_READY, f"node {node_name} registered, waiting for Ready")
            announced = True
        if node_is_ready(node):
            assert node is not None
            return node
        if time.monotonic() > deadline:
            state = "not registered" if node is None else "registered but not Ready"
            raise ConfigurationError(
                instance.address,
                Step.NODE_READY,
                f"node {node_name} {state} after {timeout:.0f}s; see the kubelet log on the host "
                "(C:\\var\\log\\kubelet) and pending CSRs",
            )
        await asyncio.sleep(1.0)


def node_metadata_patch(
    instance: Instance, inputs: Inputs, host_key: ssh.HostKey | None
) -> dict[str, Any]:
    """The labels and annotations a configured node carries (a merge patch)."""
    labels: dict[str, str | None] = {names.WORKER_ROLE_LABEL: ""}
    if instance.origin is Origin.BYOH:
        labels[names.BYOH_LABEL] = names.TRUE
    annotations: dict[str, str | None] = {
        names.VERSION_ANNOTATION: inputs.version,
        names.DESIRED_VERSION_ANNOTATION: inputs.version,
        names.PUB_KEY_HASH_ANNOTATION: inputs.pub_key_hash,
        names.USERNAME_ANNOTATION: instance.username,
        names.INSTANCE_ADDRESS_ANNOTATION: instance.address,
    }
    if instance.machine:
        annotations[names.MACHINE_ANNOTATION] = instance.machine
    if host_key is not None:
        annotations.update(hostkeys.node_annotations(host_key))
    return {"metadata": {"labels": labels, "annotations": annotations}}


async def configure(
    client: kube.Client,
    instance: Instance,
    inputs: Inputs,
    *,
    progress: Progress = _no_progress,
) -> Outcome:
    """Bring one instance to a Ready, labelled node; safe to call again at any point.

    Raises:
        HostKeyChangedError: The instance's host key is not the pinned one.
        ConfigurationError: A step failed (the message names the step and the cause).
    """
    started = time.monotonic()
    settings = inputs.settings
    existing = await find_node(client, instance)
    await progress(Step.CONNECT, f"connecting to {instance.username}@{instance.address}")
    host = await _connect(client, instance, inputs, existing)
    runner = _Runner(host, instance.address)
    try:
        await progress(Step.IDENTIFY, "SSH reachable")
        runner.step = Step.IDENTIFY
        node_name = commands.parse_node_name(
            (await runner.run(commands.hostname(), "hostname query")).stdout
        )
        if existing is not None and existing.metadata and existing.metadata.name != node_name:
            raise ConfigurationError(
                instance.address,
                Step.IDENTIFY,
                f"the host calls itself {node_name!r} but node {existing.metadata.name!r} already "
                "has this address; rename the host back or delete that node",
            )

        runner.step = Step.CONTAINERS_FEATURE
        if await _ensure_containers_feature(runner, settings):
            await progress(Step.CONTAINERS_FEATURE, "Containers feature enabled (rebooted)")

        runner.step = Step.DIRECTORIES
        for directory in (*services.REQUIRED_DIRECTORIES, *inputs.payload.destination_directories):
            await runner.run(commands.make_directory(directory), f"creation of {directory}")

        runner.step = Step.PAYLOAD
        await progress(Step.PAYLOAD, f"checking {len(inputs.payload.files)} payload files")
        try:
            report = await transfer.ensure_files(host, inputs.payload.files)
        except ssh.SshError as exc:
            raise ConfigurationError(instance.address, Step.PAYLOAD, str(exc)) from None
        await progress(
            Step.PAYLOAD, f"files copied: {len(report.copied)}, unchanged: {len(report.skipped)}"
        )

        runner.step = Step.BOOTSTRAP_FILES
        try:
            endpoint = await bootstrap.cluster_endpoint(client, settings)
        except bootstrap.BootstrapError as exc:
            raise ConfigurationError(instance.address, Step.BOOTSTRAP_FILES, str(exc)) from None
        token = await bootstrap.ensure_token(
            client, address=instance.address, node_name=node_name, settings=settings
        )
        kubelet_inputs = services.KubeletConfigInputs(
            cluster_dns=(settings.cluster_dns_address,),
            cluster_domain=settings.cluster_domain,
            provider_id=instance.provider_id,
        )
        files: Mapping[str, tuple[bytes, str]] = {
            services.BOOTSTRAP_CA: (endpoint.ca_pem, "cluster CA"),
            services.KUBELET_CA: (endpoint.ca_pem, "kubelet client CA"),
            services.BOOTSTRAP_KUBECONFIG: (
                bootstrap.bootstrap_kubeconfig(endpoint, services.BOOTSTRAP_CA, token),
                "bootstrap kubeconfig",
            ),
            services.KUBELET_CONFIG: (
                services.kubelet_config_json(kubelet_inputs).encode(),
                "kubelet configuration",
            ),
        }
        changed = [
            path
            for path, (data, what) in files.items()
            if await _ensure_content(runner, path, data, what)
        ]

        runner.step = Step.SERVICES
        desired = services.node_services(
            services.NodeServiceOptions(
                node_name=node_name,
                node_ip=instance.node_ip,
                network_profile=settings.network_profile,
                api_server_url=endpoint.server,
                debug=settings.debug,
            )
        )
        observed = await observe_services(runner)
        restart = bool(changed) or bool(report.copied)
        if (
            restart
            and observed.get(services.KUBELET, services.ObservedService(services.KUBELET)).active
        ):
            # New binaries or configuration: the running kubelet (and what depends on it) must
            # restart to pick them up. The plan starts them again.
            stops = [
                services.ServiceAction(services.ActionKind.STOP, name)
                for name in reversed(services.start_order(desired))
                if observed.get(name) is not None and observed[name].active
            ]
            await apply_service_actions(runner, stops)
            observed = await observe_services(runner)
        plan = services.plan_service_changes(desired, observed)
        await progress(Step.SERVICES, f"{len(plan)} service changes")
        await apply_service_actions(runner, plan)
        await progress(Step.SERVICES, "services running")

        runner.step = Step.NODE_READY
        await _wait_for_node(client, instance, node_name, settings.node_ready_timeout, progress)
        await progress(Step.NODE_READY, f"node {node_name} Ready")

        runner.step = Step.NODE_METADATA
        await kube.patch(
            client, Node, node_name, node_metadata_patch(instance, inputs, host.host_key)
        )
        await hostkeys.forget(client, settings.namespace, instance.address)
        await bootstrap.delete_tokens(client, instance.address)
        await progress(Step.DONE, f"node {node_name} configured")
        return Outcome(
            node_name=node_name,
            files_copied=len(report.copied),
            files_skipped=len(report.skipped),
            service_actions=len(plan),
            seconds=time.monotonic() - started,
        )
    finally:
        await host.close()
