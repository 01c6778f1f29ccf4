r"""The Windows services of a node, declared as data: one :class:`ServiceSpec` per service.

The reference operator ships a second program (WICD) that reconciles services on the host from a
``windows-services-<version>`` ConfigMap. We keep the idea (a declarative, versioned list of
services) without the second program: :func:`node_services` declares the list for one node and
:mod:`wmco.windows.planner` decides, purely, which sc.exe steps move the host to it.

The network profile decides the list (contract §7): every node runs containerd, the kubelet and
windows_exporter; ``ovn-hybrid`` adds hybrid-overlay-node and kube-proxy (ours), ``hostprocess``
neither (the cluster's DaemonSets bring CNI and kube-proxy).

Each spec also says which files it *holds* (:attr:`ServiceSpec.held_files`): its image, the child
that kube-log-runner wraps, and the configuration it reads only at start. A change of one of them
needs the service stopped first (Windows refuses to overwrite a running image) and started again
afterwards (contract §5); every other file changes live.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Final

from wmco import names, settings
from wmco.windows import commands, exporterconfig, kubelet, layout, quoting

CONTAINERD: Final = "containerd"
KUBELET: Final = "kubelet"
KUBE_PROXY: Final = "kube-proxy"
WINDOWS_EXPORTER: Final = "windows_exporter"
HYBRID_OVERLAY: Final = "hybrid-overlay-node"

ALL_MANAGED_SERVICES: Final = (CONTAINERD, KUBELET, HYBRID_OVERLAY, KUBE_PROXY, WINDOWS_EXPORTER)
"""Every service any profile may install, in start order (the reverse is the removal order)."""

NETWORK_SERVICES: Final = (HYBRID_OVERLAY, KUBE_PROXY)
"""The services only ``ovn-hybrid`` runs."""

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
        config_files: Files it reads only when it starts (a change needs a restart).
        description: ``wmco managed <name>``, the mark of a managed service.
    """

    name: str
    binary: str
    args: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    config_files: tuple[str, ...] = ()
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

    @property
    def wrapped_binary(self) -> str | None:
        """The program kube-log-runner runs for this service (its first non-flag argument)."""
        if self.binary.lower() != layout.KUBE_LOG_RUNNER_EXE.lower():
            return None
        return next((arg for arg in self.args if not arg.startswith("-")), None)

    @property
    def held_files(self) -> tuple[str, ...]:
        """Every file whose change needs this service stopped first and started afterwards."""
        wrapped = self.wrapped_binary
        return (self.binary, *((wrapped,) if wrapped else ()), *self.config_files)


@dataclasses.dataclass(frozen=True, slots=True)
class NodeServiceOptions:
    r"""What differs from node to node in the service list.

    Attributes:
        network_profile: ``ovn-hybrid`` or ``hostprocess`` (``auto`` is refused).
        node_name: The name the kubelet registers (lower-case); ``None`` lets the kubelet use the
            host name.
        node_ip: The IP the kubelet reports as InternalIP; ``None`` lets it choose.
        api_server_url: API server URL (hybrid-overlay-node needs it).
        debug: Verbose logging (``--v=4``).
        log_runner: Wrap kubelet and kube-proxy in ``kube-log-runner.exe`` so that their logs go
            to files under ``C:\var\log`` (their own log-file flags were removed in 1.26).
        exporter_web_config: Path of windows_exporter's TLS web config (``None``: plain HTTP,
            no TLS files held).
    """

    network_profile: settings.NetworkProfile
    node_name: str | None = None
    node_ip: str | None = None
    api_server_url: str | None = None
    debug: bool = False
    log_runner: bool = True
    exporter_web_config: str | None = layout.WINDOWS_EXPORTER_WEB_CONFIG


def _logged(
    options: NodeServiceOptions, log_file: str, binary: str, args: Sequence[str]
) -> tuple[str, tuple[str, ...]]:
    if not options.log_runner:
        return binary, tuple(args)
    return layout.KUBE_LOG_RUNNER_EXE, (f"-log-file={log_file}", binary, *args)


def _verbosity(options: NodeServiceOptions) -> str:
    return f"--v={4 if options.debug else 2}"


def _containerd(options: NodeServiceOptions) -> ServiceSpec:
    return ServiceSpec(
        name=CONTAINERD,
        binary=layout.CONTAINERD_EXE,
        args=(
            "--config",
            layout.CONTAINERD_CONFIG,
            "--log-file",
            layout.CONTAINERD_LOG,
            "--run-service",
            "--log-level",
            "debug" if options.debug else "info",
        ),
        config_files=(layout.CONTAINERD_SHIM_EXE, layout.CONTAINERD_CONFIG),
    )


def _kubelet(options: NodeServiceOptions) -> ServiceSpec:
    binary, argv = _logged(
        options,
        layout.KUBELET_LOG,
        layout.KUBELET_EXE,
        kubelet.kubelet_args(
            kubelet.KubeletFlags(
                node_name=options.node_name, node_ip=options.node_ip, debug=options.debug
            )
        ),
    )
    return ServiceSpec(
        name=KUBELET,
        binary=binary,
        args=argv,
        depends_on=(CONTAINERD,),
        config_files=(layout.KUBELET_CONFIG, layout.BOOTSTRAP_CA),
    )


def _hybrid_overlay(options: NodeServiceOptions) -> ServiceSpec:
    if not options.api_server_url:
        raise ServiceSpecError("hybrid-overlay-node needs the API server URL")
    if not options.node_name:
        raise ServiceSpecError("hybrid-overlay-node needs the node name")
    args = [
        "--node",
        options.node_name,
        f"--bootstrap-kubeconfig={layout.KUBECONFIG}",
        f"--cert-dir={layout.OVN_CNI_CONF_DIR}",
        "--cert-duration=24h",
        "--windows-service",
        "--logfile",
        layout.HYBRID_OVERLAY_LOG,
        f"--k8s-apiserver={options.api_server_url}",
        "--k8s-cacert",
        layout.BOOTSTRAP_CA,
    ]
    if options.debug:
        args += ["--loglevel", "5"]
    return ServiceSpec(
        name=HYBRID_OVERLAY,
        binary=layout.HYBRID_OVERLAY_EXE,
        args=tuple(args),
        depends_on=(KUBELET,),
    )


def _kube_proxy(options: NodeServiceOptions) -> ServiceSpec:
    # Everything else (node name, network, sourceVip) is in its configuration file.
    binary, argv = _logged(
        options,
        layout.KUBE_PROXY_LOG,
        layout.KUBE_PROXY_EXE,
        (f"--config={layout.KUBE_PROXY_CONFIG}", "--windows-service", _verbosity(options)),
    )
    return ServiceSpec(
        name=KUBE_PROXY,
        binary=binary,
        args=argv,
        depends_on=(HYBRID_OVERLAY,),
        config_files=(layout.KUBE_PROXY_CONFIG,),
    )


def _windows_exporter(options: NodeServiceOptions) -> ServiceSpec:
    # windows_exporter 0.30 (kingpin flags): HTTPS through the exporter-toolkit web config; its
    # certificate and key are read again on each connection, but a changed file still restarts
    # the service (config_files), so that a broken file shows at once as a failed start.
    args = [
        "--collectors.enabled",
        ",".join(exporterconfig.COLLECTORS),
        f"--web.listen-address=:{names.WINDOWS_EXPORTER_PORT}",
        "--log.file",
        layout.WINDOWS_EXPORTER_LOG,
    ]
    config_files: tuple[str, ...] = ()
    if options.exporter_web_config:
        args += ["--web.config.file", options.exporter_web_config]
        config_files = (
            options.exporter_web_config,
            layout.WINDOWS_EXPORTER_CERT,
            layout.WINDOWS_EXPORTER_KEY,
        )
    return ServiceSpec(
        name=WINDOWS_EXPORTER,
        binary=layout.WINDOWS_EXPORTER_EXE,
        args=tuple(args),
        config_files=config_files,
    )


def node_services(options: NodeServiceOptions) -> tuple[ServiceSpec, ...]:
    """The declared services of one node, in start order.

    Args:
        options: Per-node values.

    Returns:
        ``ovn-hybrid``: containerd, kubelet, hybrid-overlay-node, kube-proxy, windows_exporter;
        ``hostprocess``: containerd, kubelet, windows_exporter.

    Raises:
        ServiceSpecError: An option produces an invalid argument (e.g. whitespace in a name), or
            the profile was not resolved.
    """
    profile = options.network_profile
    if profile is settings.NetworkProfile.AUTO:
        raise ServiceSpecError("the network profile must be resolved before services are declared")
    specs = [_containerd(options), _kubelet(options)]
    if profile is settings.NetworkProfile.OVN_HYBRID:
        specs += [_hybrid_overlay(options), _kube_proxy(options)]
    specs.append(_windows_exporter(options))
    result = tuple(specs)
    start_order(result)
    return result


def foreign_services(profile: settings.NetworkProfile) -> tuple[str, ...]:
    """Managed services the profile does not run (removed if a host still has them)."""
    if profile is settings.NetworkProfile.OVN_HYBRID:
        return ()
    return NETWORK_SERVICES


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
