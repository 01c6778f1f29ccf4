r"""The Windows services of a node, declared as data, and the plan that reconciles them.

The reference operator ships a second program (WICD) that reconciles services on the host from a
``windows-services-<version>`` ConfigMap. We keep the idea (a declarative, versioned list of
services) without the second program: the operator reads the host's services over SSH
(``sc.exe qc`` / ``sc.exe query``) and :func:`plan_service_changes` decides, purely, which sc.exe
steps move the host to the declared list. The thin async shell that runs the steps lives in
``nodeconfig``.

Every service is a :class:`ServiceSpec`; :func:`node_services` builds the list for one node
(containerd, kubelet, kube-proxy, windows_exporter, plus the network profile's pieces) and
:func:`kubelet_config` the kubelet's ``KubeletConfiguration`` (written to ``C:\k\kubelet.conf``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from wmco import names, settings
from wmco.windows import commands, quoting

# --- Paths on the host ------------------------------------------------------------------------

K_DIR: Final = "C:\\k"
LOG_DIR: Final = "C:\\var\\log"
CONTAINERD_DIR: Final = "C:\\k\\containerd"
CNI_DIR: Final = "C:\\k\\cni"
CNI_CONFIG_DIR: Final = "C:\\k\\cni\\config"
KUBELET_EXE: Final = "C:\\k\\kubelet.exe"
KUBE_PROXY_EXE: Final = "C:\\k\\kube-proxy.exe"
KUBE_LOG_RUNNER_EXE: Final = "C:\\k\\kube-log-runner.exe"
CONTAINERD_EXE: Final = "C:\\k\\containerd\\containerd.exe"
CONTAINERD_CONFIG: Final = "C:\\k\\containerd\\containerd_conf.toml"
WINDOWS_EXPORTER_EXE: Final = "C:\\k\\windows_exporter.exe"
HYBRID_OVERLAY_EXE: Final = "C:\\k\\hybrid-overlay-node.exe"
KUBELET_CONFIG: Final = "C:\\k\\kubelet.conf"
BOOTSTRAP_KUBECONFIG: Final = "C:\\k\\bootstrap-kubeconfig"
KUBECONFIG: Final = "C:\\k\\kubeconfig"
KUBELET_CA: Final = "C:\\k\\kubelet-ca.crt"
BOOTSTRAP_CA: Final = "C:\\k\\bootstrap-ca.crt"
KUBE_PROXY_CONFIG: Final = "C:\\k\\kube-proxy.conf"
KUBELET_CERT_DIR: Final = "C:\\var\\lib\\kubelet\\pki"
CONTAINERD_ENDPOINT: Final = "npipe://./pipe/containerd-containerd"

REQUIRED_DIRECTORIES: Final = (
    K_DIR,
    CNI_DIR,
    CNI_CONFIG_DIR,
    CONTAINERD_DIR,
    KUBELET_CERT_DIR,
    LOG_DIR,
    LOG_DIR + "\\kubelet",
    LOG_DIR + "\\kube-proxy",
    LOG_DIR + "\\containerd",
    LOG_DIR + "\\windows_exporter",
    LOG_DIR + "\\hybrid-overlay",
)
"""Directories created on every host before files are copied, parents first."""

# --- Service names ----------------------------------------------------------------------------

CONTAINERD: Final = "containerd"
KUBELET: Final = "kubelet"
KUBE_PROXY: Final = "kube-proxy"
WINDOWS_EXPORTER: Final = "windows_exporter"
HYBRID_OVERLAY: Final = "hybrid-overlay-node"

ALL_MANAGED_SERVICES: Final = (CONTAINERD, KUBELET, HYBRID_OVERLAY, KUBE_PROXY, WINDOWS_EXPORTER)
"""Every service any profile may install, in start order (the reverse is the removal order)."""

_TOKEN: Final = re.compile(r"[^\s\"]+")


class ServiceSpecError(ValueError):
    """A service declaration is inconsistent (bad argument, unknown dependency, cycle)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One Windows service as the operator wants it.

    Attributes:
        name: Service name (``sc.exe`` name).
        binary: Absolute Windows path of the executable.
        args: Arguments, one token each (no whitespace, no ``"``), so the command line is
            unambiguous without any inner quoting.
        depends_on: Services that must run before this one (sc.exe ``depend=``).
        description: ``wmco managed <name>``, the mark of a managed service.
    """

    name: str
    binary: str
    args: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        """Validate every part so that the sc.exe commands built from it cannot fail quoting."""
        try:
            commands.check_service_name(self.name)
            commands.check_windows_path(self.binary, what="service binary")
            for dependency in self.depends_on:
                commands.check_service_name(dependency)
        except quoting.UnsafeValueError as exc:
            raise ServiceSpecError(f"service {self.name!r}: {exc}") from None
        for token in (self.binary, *self.args):
            if not _TOKEN.fullmatch(token):
                raise ServiceSpecError(
                    f"service {self.name!r}: argument {token!r} is empty or has whitespace or '\"'"
                )
        if self.name in self.depends_on:
            raise ServiceSpecError(f"service {self.name!r} depends on itself")
        if not self.description:
            object.__setattr__(self, "description", names.service_description(self.name))

    @property
    def command_line(self) -> str:
        """The ``binPath=`` value: the binary and its arguments separated by single spaces."""
        return " ".join((self.binary, *self.args))


@dataclasses.dataclass(frozen=True, slots=True)
class NodeServiceOptions:
    r"""What differs from node to node in the service list.

    Attributes:
        node_name: The name the kubelet registers (lower-case); ``None`` lets the kubelet use the
            host name.
        node_ip: The IP the kubelet reports as InternalIP; ``None`` lets it choose.
        network_profile: Networking pieces to add.
        api_server_url: API server URL (hybrid-overlay-node needs it).
        debug: Verbose logging (kubelet ``--v=4``).
        log_runner: Wrap kubelet and kube-proxy in ``kube-log-runner.exe`` so that their logs go
            to files under ``C:\var\log`` (their own log-file flags were removed in 1.26).
        exporter_web_config: Path of windows_exporter's TLS web config, if any.
    """

    node_name: str | None = None
    node_ip: str | None = None
    network_profile: settings.NetworkProfile = settings.NetworkProfile.NONE
    api_server_url: str | None = None
    debug: bool = False
    log_runner: bool = True
    exporter_web_config: str | None = None


def _logged(
    options: NodeServiceOptions, log_file: str, binary: str, args: Sequence[str]
) -> tuple[str, tuple[str, ...]]:
    if not options.log_runner:
        return binary, tuple(args)
    return KUBE_LOG_RUNNER_EXE, (f"-log-file={log_file}", binary, *args)


def kubelet_args(options: NodeServiceOptions) -> tuple[str, ...]:
    """The kubelet's flags (kubelet-windows.md §6), without the binary.

    Args:
        options: Per-node values.

    Returns:
        ``--config``, ``--bootstrap-kubeconfig``, ``--kubeconfig``, ``--cert-dir``,
        ``--windows-service``, ``--node-labels``, ``--windows-priorityclass``,
        ``--container-runtime-endpoint``, ``--v``, and ``--hostname-override`` / ``--node-ip``
        when known.
    """
    args = [
        f"--config={KUBELET_CONFIG}",
        f"--bootstrap-kubeconfig={BOOTSTRAP_KUBECONFIG}",
        f"--kubeconfig={KUBECONFIG}",
        f"--cert-dir={KUBELET_CERT_DIR}",
        "--windows-service",
        f"--node-labels={names.NODE_OS_ID_LABEL}={names.NODE_OS_ID_WINDOWS}",
        "--windows-priorityclass=ABOVE_NORMAL_PRIORITY_CLASS",
        f"--container-runtime-endpoint={CONTAINERD_ENDPOINT}",
    ]
    if options.node_name:
        args.append(f"--hostname-override={options.node_name}")
    if options.node_ip:
        args.append(f"--node-ip={options.node_ip}")
    args.append(f"--v={4 if options.debug else 2}")
    return tuple(args)


def node_services(options: NodeServiceOptions) -> tuple[ServiceSpec, ...]:
    """The declared services of one node, in start order.

    Args:
        options: Per-node values.

    Returns:
        containerd, kubelet, [hybrid-overlay-node], kube-proxy, windows_exporter.

    Raises:
        ServiceSpecError: An option produces an invalid argument (e.g. whitespace in a name).
    """
    containerd = ServiceSpec(
        name=CONTAINERD,
        binary=CONTAINERD_EXE,
        args=(
            "--config",
            CONTAINERD_CONFIG,
            "--log-file",
            f"{LOG_DIR}\\containerd\\containerd.log",
            "--run-service",
            "--log-level",
            "debug" if options.debug else "info",
        ),
    )
    kubelet_binary, kubelet_argv = _logged(
        options, f"{LOG_DIR}\\kubelet\\kubelet.log", KUBELET_EXE, kubelet_args(options)
    )
    kubelet = ServiceSpec(
        name=KUBELET, binary=kubelet_binary, args=kubelet_argv, depends_on=(CONTAINERD,)
    )
    specs = [containerd, kubelet]
    proxy_dependency = KUBELET
    if options.network_profile is settings.NetworkProfile.HYBRID_OVERLAY:
        if not options.api_server_url:
            raise ServiceSpecError("hybrid-overlay-node needs the API server URL")
        if not options.node_name:
            raise ServiceSpecError("hybrid-overlay-node needs the node name")
        hybrid_args = [
            "--node",
            options.node_name,
            f"--bootstrap-kubeconfig={KUBECONFIG}",
            f"--cert-dir={CNI_CONFIG_DIR}",
            "--cert-duration=24h",
            "--windows-service",
            "--logfile",
            f"{LOG_DIR}\\hybrid-overlay\\hybrid-overlay.log",
            f"--k8s-apiserver={options.api_server_url}",
            "--k8s-cacert",
            BOOTSTRAP_CA,
        ]
        if options.debug:
            hybrid_args += ["--loglevel", "5"]
        specs.append(
            ServiceSpec(
                name=HYBRID_OVERLAY,
                binary=HYBRID_OVERLAY_EXE,
                args=tuple(hybrid_args),
                depends_on=(KUBELET,),
            )
        )
        proxy_dependency = HYBRID_OVERLAY
    proxy_args = [f"--config={KUBE_PROXY_CONFIG}", "--windows-service"]
    if options.node_name:
        proxy_args.append(f"--hostname-override={options.node_name}")
    proxy_args.append(f"--v={4 if options.debug else 2}")
    proxy_binary, proxy_argv = _logged(
        options, f"{LOG_DIR}\\kube-proxy\\kube-proxy.log", KUBE_PROXY_EXE, proxy_args
    )
    specs.append(
        ServiceSpec(
            name=KUBE_PROXY,
            binary=proxy_binary,
            args=proxy_argv,
            depends_on=(proxy_dependency,),
        )
    )
    exporter_args = [
        "--collectors.enabled",
        "cpu,logical_disk,net,os,service,system,container,memory,cpu_info",
        "--log.file",
        f"{LOG_DIR}\\windows_exporter\\windows_exporter.log",
    ]
    if options.exporter_web_config:
        exporter_args += ["--web.config.file", options.exporter_web_config]
    specs.append(
        ServiceSpec(name=WINDOWS_EXPORTER, binary=WINDOWS_EXPORTER_EXE, args=tuple(exporter_args))
    )
    result = tuple(specs)
    start_order(result)
    return result


# --- Kubelet configuration --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class KubeletConfigInputs:
    """Cluster values that go into the ``KubeletConfiguration``.

    Attributes:
        cluster_dns: DNS service IPs.
        cluster_domain: DNS domain.
        client_ca_file: CA that signs clients of the kubelet's :10250 (the API server's).
        provider_id: ``spec.providerID`` to register with (Machine-backed nodes), if any.
    """

    cluster_dns: tuple[str, ...]
    cluster_domain: str = "cluster.local"
    client_ca_file: str = KUBELET_CA
    provider_id: str | None = None


def kubelet_config(inputs: KubeletConfigInputs) -> dict[str, Any]:
    """The ``KubeletConfiguration`` (kubelet-windows.md §6.3) as a JSON-ready dict."""
    config: dict[str, Any] = {
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "rotateCertificates": True,
        "serverTLSBootstrap": True,
        "authentication": {
            "x509": {"clientCAFile": inputs.client_ca_file},
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": inputs.cluster_domain,
        "clusterDNS": list(inputs.cluster_dns),
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "runtimeRequestTimeout": "10m",
        "maxPods": 250,
        "kubeAPIQPS": 50,
        "kubeAPIBurst": 100,
        "serializeImagePulls": False,
        "logging": {"flushFrequency": "5s"},
        "enableSystemLogHandler": True,
        "enableSystemLogQuery": True,
        "featureGates": {"NodeLogQuery": True, "RotateKubeletServerCertificate": True},
        "containerLogMaxSize": "50Mi",
        "evictionHard": {"nodefs.available": "10%", "imagefs.available": "15%"},
        "systemReserved": {"cpu": "500m", "ephemeral-storage": "1Gi", "memory": "2Gi"},
        "containerRuntimeEndpoint": CONTAINERD_ENDPOINT,
        "registerNode": True,
        "registerWithTaints": [
            {
                "key": names.WINDOWS_TAINT_KEY,
                "value": names.WINDOWS_TAINT_VALUE,
                "effect": names.WINDOWS_TAINT_EFFECT,
            }
        ],
        "resolvConf": "",
    }
    if inputs.provider_id:
        config["providerID"] = inputs.provider_id
    return config


def kubelet_config_json(inputs: KubeletConfigInputs) -> str:
    """:func:`kubelet_config` as compact one-line JSON (fits ``commands.write_small_file``)."""
    return json.dumps(kubelet_config(inputs), separators=(",", ":"), sort_keys=True)


# --- Planning ---------------------------------------------------------------------------------


class ActionKind(enum.StrEnum):
    """One sc.exe step."""

    CREATE = "create"
    CHANGE = "change"
    DESCRIBE = "describe"
    SET_RECOVERY = "set-recovery"
    STOP = "stop"
    START = "start"
    DELETE = "delete"


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceAction:
    """One step of a plan: what to do to which service (and the declaration, when relevant)."""

    kind: ActionKind
    service: str
    spec: ServiceSpec | None = None

    def command(self) -> str:
        """The exact command that performs this step (see :mod:`wmco.windows.commands`)."""
        spec = self.spec
        match self.kind:
            case ActionKind.CREATE:
                assert spec is not None
                return commands.create_service(spec.name, spec.command_line, spec.depends_on)
            case ActionKind.CHANGE:
                assert spec is not None
                return commands.change_service(spec.name, spec.command_line, spec.depends_on)
            case ActionKind.DESCRIBE:
                assert spec is not None
                return commands.set_service_description(spec.name, spec.description)
            case ActionKind.SET_RECOVERY:
                return commands.set_service_recovery(self.service)
            case ActionKind.STOP:
                return commands.stop_service(self.service)
            case ActionKind.START:
                return commands.start_service(self.service)
            case ActionKind.DELETE:
                return commands.delete_service(self.service)


@dataclasses.dataclass(frozen=True, slots=True)
class ObservedService:
    """What the host says about one service: ``None`` config means it does not exist (1060).

    Attributes:
        name: Service name.
        config: Parsed ``sc.exe qc``; ``None`` when the service does not exist.
        state: Parsed ``sc.exe query`` state; ``None`` when unknown or absent.
    """

    name: str
    config: commands.ServiceConfig | None = None
    state: commands.ServiceState | None = None

    @property
    def exists(self) -> bool:
        """Whether the service is installed."""
        return self.config is not None

    @property
    def active(self) -> bool:
        """Whether the service runs or is on its way (stopping it is needed before changes)."""
        return self.state in (
            commands.ServiceState.RUNNING,
            commands.ServiceState.START_PENDING,
            commands.ServiceState.CONTINUE_PENDING,
            commands.ServiceState.PAUSED,
            commands.ServiceState.PAUSE_PENDING,
        )


def start_order(specs: Sequence[ServiceSpec]) -> list[str]:
    """Order service names so that every service comes after its dependencies.

    Dependencies outside ``specs`` are ignored (the host provides them); the relative order of
    ``specs`` is kept where the dependencies allow it.

    Raises:
        ServiceSpecError: Duplicate names or a dependency cycle.
    """
    by_name: dict[str, ServiceSpec] = {}
    for spec in specs:
        if spec.name in by_name:
            raise ServiceSpecError(f"service {spec.name!r} is declared twice")
        by_name[spec.name] = spec
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in visiting:
            raise ServiceSpecError("dependency cycle: " + " -> ".join((*path, name)))
        visiting.add(name)
        for dependency in by_name[name].depends_on:
            if dependency in by_name:
                visit(dependency, (*path, name))
        visiting.discard(name)
        order.append(name)

    for spec in specs:
        visit(spec.name, ())
    return order


def needs_change(spec: ServiceSpec, config: commands.ServiceConfig) -> bool:
    """Whether the installed configuration differs from the declaration.

    Compares the command line (exactly, as sc.exe stores it), the start type (automatic) and the
    set of dependencies.
    """
    return (
        config.binary_path != spec.command_line
        or config.start_type is not commands.StartType.AUTO
        or frozenset(config.dependencies) != frozenset(spec.depends_on)
    )


def plan_service_changes(
    desired: Sequence[ServiceSpec],
    observed: Mapping[str, ObservedService],
    *,
    remove: Sequence[str] = (),
) -> list[ServiceAction]:
    """Plan the sc.exe steps that turn the observed services into the desired ones.

    The plan: stop what must change or go (dependents first), delete what goes, create what is
    missing (with description and recovery actions), change what differs, then start every
    desired service that is not running, dependencies first. An empty plan means the host is
    already as declared.

    Args:
        desired: The declared services (any order; dependencies are respected).
        observed: What the host reported, by service name. A desired name absent here is treated as
            not installed.
        remove: Managed service names that must not exist (e.g. pieces of another profile);
            removed only if observed as installed.

    Returns:
        The ordered steps.

    Raises:
        ServiceSpecError: The declaration has duplicates or a cycle.
    """
    order = start_order(desired)
    by_name = {spec.name: spec for spec in desired}
    desired_names = set(order)

    def seen(name: str) -> ObservedService:
        return observed.get(name, ObservedService(name=name))

    to_create = [name for name in order if not seen(name).exists]
    to_change = [
        name
        for name in order
        if (config := seen(name).config) is not None and needs_change(by_name[name], config)
    ]
    to_delete = [name for name in remove if name not in desired_names and seen(name).exists]

    # Stopping a service needs its running dependents stopped first (else sc.exe answers 1051).
    must_stop = {name for name in (*to_change, *to_delete) if seen(name).active}
    dependents = _installed_dependents(observed)
    frontier = list(must_stop)
    while frontier:
        current = frontier.pop()
        for dependent in dependents.get(current, ()):
            if dependent not in must_stop and seen(dependent).active:
                must_stop.add(dependent)
                frontier.append(dependent)

    actions: list[ServiceAction] = []
    for name in _stop_order(must_stop, dependents):
        actions.append(ServiceAction(ActionKind.STOP, name))
    for name in to_delete:
        actions.append(ServiceAction(ActionKind.DELETE, name))
    for name in to_create:
        spec = by_name[name]
        actions.append(ServiceAction(ActionKind.CREATE, name, spec))
        actions.append(ServiceAction(ActionKind.DESCRIBE, name, spec))
        actions.append(ServiceAction(ActionKind.SET_RECOVERY, name, spec))
    for name in to_change:
        spec = by_name[name]
        actions.append(ServiceAction(ActionKind.CHANGE, name, spec))
        actions.append(ServiceAction(ActionKind.DESCRIBE, name, spec))
    for name in order:
        stopped_by_plan = name in must_stop
        if stopped_by_plan or not seen(name).active:
            actions.append(ServiceAction(ActionKind.START, name, by_name[name]))
    return actions


def plan_service_removal(observed: Mapping[str, ObservedService]) -> list[ServiceAction]:
    """Plan stopping and deleting every observed, installed service (deconfiguration).

    Dependents are stopped before what they depend on; deletion follows the same order.
    """
    installed = {name for name, service in observed.items() if service.exists}
    dependents = _installed_dependents(observed)
    order = _stop_order(installed, dependents)
    actions = [ServiceAction(ActionKind.STOP, name) for name in order if observed[name].active]
    actions += [ServiceAction(ActionKind.DELETE, name) for name in order]
    return actions


def _installed_dependents(observed: Mapping[str, ObservedService]) -> dict[str, list[str]]:
    dependents: dict[str, list[str]] = {}
    for name, service in observed.items():
        if service.config is None:
            continue
        for dependency in service.config.dependencies:
            dependents.setdefault(dependency, []).append(name)
    return dependents


def _stop_order(names_to_stop: set[str], dependents: Mapping[str, list[str]]) -> list[str]:
    """Dependents before their dependencies; ties in :data:`ALL_MANAGED_SERVICES` reverse order."""
    rank = {name: index for index, name in enumerate(reversed(ALL_MANAGED_SERVICES))}
    pending = sorted(names_to_stop, key=lambda name: (rank.get(name, -1), name))
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str, trail: frozenset[str]) -> None:
        if name in placed or name in trail:
            return
        for dependent in dependents.get(name, ()):
            if dependent in names_to_stop:
                place(dependent, trail | {name})
        placed.add(name)
        order.append(name)

    for name in pending:
        place(name, frozenset())
    return order
