r"""Drift detection on a configured host: ONE read-only SSH exec, compared with what it must be.

A host whose Node is up to date is never sent through the configure flow, so a stopped service
or an edited file would stay unnoticed. Every ``resync_interval`` the host controllers call
:func:`probe`: one connection, ONE command (:func:`wmco.windows.commands.drift_probe`: the OS
build, ``sc.exe qc`` / ``sc.exe query`` of every managed service, the SHA-256 of every payload
and generated file, and on ``ovn-hybrid`` the HNS networks and endpoints), parsed by
:mod:`wmco.windows.probeanswers`, then compared (:func:`compare`, pure) with the desired state
computed by the very functions the configure flow uses (:mod:`wmco.nodeconfig.desired`,
:func:`wmco.nodeconfig.network.cni_content`, :func:`wmco.nodeconfig.network.kube_proxy_content`).
Nothing is changed here; the caller repairs what differs by running the normal configure flow,
which rewrites, stops and starts exactly what differs.

What is compared, and how:

* each declared service: installed, its definition (command line, automatic start,
  dependencies: :func:`wmco.windows.planner.needs_change`) and running; windows_exporter is
  only expected to run when there is an exporter CA (the flow leaves it stopped otherwise);
  services of the other network profile must not be installed;
* every payload file and every generated file by its digest;
* windows_exporter's certificate and key by the digests recorded on the Node (the
  ``exporter-cert`` annotation): they are issued fresh and cannot be recomputed;
* ``cni.conf`` and ``kube-proxy.conf`` from the host's own HNS state in the same answer (the
  overlay network of the node's subnet, the ``VIPEndpoint``); a missing network or endpoint is
  itself a finding.

Not compared, on purpose: the bootstrap kubeconfig (it carries a one-time token, revoked once
the node joined; the kubelet reads it only without a valid client certificate, and a host is
probed only while its Node is Ready), and what the kubelet writes itself (its kubeconfig and
certificates).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from lightkube.resources.core_v1 import Node

from wmco import kube, names, settings
from wmco.cluster import runtimeclasses
from wmco.nodeconfig import bootstrap, exportertls, network
from wmco.nodeconfig import desired as desired_mod
from wmco.nodeconfig import runner as runner_mod
from wmco.nodeconfig.instance import ConfigurationError, Inputs, Instance, Step
from wmco.nodeconfig.runner import parsed
from wmco.windows import answers, commands, layout, planner, probeanswers, services, transfer


class FindingKind(enum.StrEnum):
    """What kind of difference a finding is."""

    SERVICE_MISSING = "service-missing"
    SERVICE_STATE = "service-state"
    SERVICE_DEFINITION = "service-definition"
    FOREIGN_SERVICE = "foreign-service"
    FILE = "file"
    NETWORK = "network"


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One difference between the host and what it must be.

    Attributes:
        kind: Its kind.
        subject: The service name, file path or HNS object concerned.
        message: What was found, for the Event (e.g. ``kube-proxy was Stopped``).
    """

    kind: FindingKind
    subject: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class NetworkExpectation:
    """What the ``ovn-hybrid`` files are computed from (the rest comes from the host's HNS)."""

    node_name: str
    subnet: str
    service_cidr: str
    debug: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Expected:
    """The desired state of one host, as far as the probe compares it.

    Attributes:
        services: The declared services.
        left_stopped: Declared services that are not expected to run.
        foreign: Managed services that must not be installed.
        files: Destination to lower-case SHA-256 of every file with a known digest.
        network: On ``ovn-hybrid``, what ``cni.conf`` and ``kube-proxy.conf`` derive from.
    """

    services: tuple[services.ServiceSpec, ...]
    left_stopped: tuple[str, ...]
    foreign: tuple[str, ...]
    files: Mapping[str, str]
    network: NetworkExpectation | None = None

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file the probe hashes."""
        extra = (layout.OVN_CNI_CONFIG, layout.KUBE_PROXY_CONFIG) if self.network else ()
        return (*self.files, *extra)

    @property
    def service_names(self) -> tuple[str, ...]:
        """Every service the probe describes: the declared ones, then the foreign ones."""
        return (*(spec.name for spec in self.services), *self.foreign)


def _state_word(state: answers.ServiceState | None) -> str:
    if state is None:
        return "in an unknown state"
    return "".join(part.capitalize() for part in state.name.split("_"))


def _definition_parts(spec: services.ServiceSpec, config: answers.ServiceConfig) -> list[str]:
    parts = []
    if config.binary_path != spec.command_line:
        parts.append("command line")
    if config.start_type is not answers.StartType.AUTO:
        parts.append("start type")
    if frozenset(config.dependencies) != frozenset(spec.depends_on):
        parts.append("dependencies")
    return parts


def network_files(
    expectation: NetworkExpectation, report: probeanswers.ProbeReport
) -> tuple[dict[str, str], list[Finding]]:
    """The digests ``cni.conf`` and ``kube-proxy.conf`` must have on this host's HNS state."""
    overlay = network.find_overlay_network(report.networks, expectation.subnet)
    if overlay is None:
        return {}, [
            Finding(
                FindingKind.NETWORK,
                names.HYBRID_OVERLAY_NETWORK,
                f"HNS network {names.HYBRID_OVERLAY_NETWORK} for {expectation.subnet} was missing",
            )
        ]
    files: dict[str, str] = {}
    findings: list[Finding] = []
    try:
        files[layout.OVN_CNI_CONFIG] = network.cni_content(overlay, expectation.service_cidr).sha256
    except ValueError as exc:
        findings.append(Finding(FindingKind.NETWORK, names.HYBRID_OVERLAY_NETWORK, str(exc)))
    decision = network.decide_vip_endpoint(report.endpoints, overlay)
    if decision.action is network.VipAction.CREATE:
        # After a reboot HNS forgot VIPEndpoint and kube-proxy re-made its sourceVip endpoint
        # itself; the configure flow adopts that one (network.adoptable_source_vip), so must we.
        def config_for(endpoint: answers.HnsEndpoint) -> transfer.Content:
            return network.kube_proxy_content(
                expectation.node_name, expectation.subnet, endpoint, debug=expectation.debug
            )

        adopted = network.adoptable_source_vip(
            report.endpoints,
            overlay,
            report.hashes.get(layout.KUBE_PROXY_CONFIG.lower()),
            config_for,
        )
        if adopted is not None:
            decision = network.VipDecision(network.VipAction.REUSE, adopted)
    if decision.action is not network.VipAction.REUSE or decision.endpoint is None:
        findings.append(
            Finding(
                FindingKind.NETWORK,
                names.VIP_ENDPOINT,
                f"HNS endpoint {names.VIP_ENDPOINT} was "
                + ("missing" if decision.action is network.VipAction.CREATE else "stale"),
            )
        )
        return files, findings
    try:
        proxy = network.kube_proxy_content(
            expectation.node_name, expectation.subnet, decision.endpoint, debug=expectation.debug
        )
    except ValueError as exc:
        findings.append(Finding(FindingKind.NETWORK, names.VIP_ENDPOINT, str(exc)))
    else:
        files[layout.KUBE_PROXY_CONFIG] = proxy.sha256
    return files, findings


def compare(expected: Expected, report: probeanswers.ProbeReport) -> tuple[Finding, ...]:
    """Every difference between the probe's report and the desired state (pure).

    Services come first (start order), then files (in the order asked), then the network.
    """
    findings: list[Finding] = []
    for spec in expected.services:
        seen = report.services.get(spec.name, planner.ObservedService(spec.name))
        if seen.config is None:
            findings.append(
                Finding(FindingKind.SERVICE_MISSING, spec.name, f"{spec.name} was not installed")
            )
            continue
        parts = _definition_parts(spec, seen.config)
        if parts:
            findings.append(
                Finding(
                    FindingKind.SERVICE_DEFINITION,
                    spec.name,
                    f"{spec.name} had another {', '.join(parts)}",
                )
            )
        if spec.name not in expected.left_stopped and not seen.active:
            findings.append(
                Finding(
                    FindingKind.SERVICE_STATE,
                    spec.name,
                    f"{spec.name} was {_state_word(seen.state)}",
                )
            )
    for name in expected.foreign:
        seen = report.services.get(name, planner.ObservedService(name))
        if seen.exists:
            findings.append(
                Finding(FindingKind.FOREIGN_SERVICE, name, f"{name} was installed (not wanted)")
            )
    files = dict(expected.files)
    network_findings: list[Finding] = []
    if expected.network is not None:
        derived, network_findings = network_files(expected.network, report)
        files.update(derived)
    for path, digest in files.items():
        actual = report.hashes.get(path.lower())
        if actual != digest.lower():
            state = "was missing" if actual is None else "differed"
            findings.append(Finding(FindingKind.FILE, path, f"{path} {state}"))
    return (*findings, *network_findings)


def describe(findings: tuple[Finding, ...]) -> str:
    r"""The findings as one sentence for the Event (``kube-proxy was Stopped; C:\k\x differed``)."""
    return "; ".join(finding.message for finding in findings)


def _build_of(node: Node) -> int:
    labels = (node.metadata.labels if node.metadata else None) or {}
    build = labels.get(names.WINDOWS_BUILD_LABEL, "").rpartition(".")[2]
    return int(build) if build.isdigit() else 0


def _exporter_files(inputs: Inputs, node: Node) -> dict[str, str]:
    if inputs.exporter_ca is None:
        return {}
    files = {layout.WINDOWS_EXPORTER_WEB_CONFIG: exportertls.web_config_content().sha256}
    record = exportertls.record_of(node)
    if record is not None:
        files[layout.WINDOWS_EXPORTER_CERT] = record.cert_sha256
        files[layout.WINDOWS_EXPORTER_KEY] = record.key_sha256
    return files


class Planner:
    """The desired state of one host, from the cluster (API reads only, no host command)."""

    def __init__(self, inputs: Inputs, instance: Instance, node: Node) -> None:
        self.inputs = inputs
        self.instance = instance
        self.node = node

    async def endpoint(self, client: kube.Client) -> bootstrap.ClusterEndpoint:
        """The API server URL and CA, as the configure flow finds them."""
        return await bootstrap.cluster_endpoint(client, self.inputs.settings)

    def expected(self, endpoint: bootstrap.ClusterEndpoint, build: int) -> Expected:
        """The desired state for a host of ``build``.

        The paths do not depend on the build (only containerd's configuration's content does):
        the probe asks with the Node's build label, the comparison uses the host's answer.

        Raises:
            ValueError: The desired state cannot be computed (e.g. no usable client CA).
        """
        inputs, node = self.inputs, self.node
        node_name = (node.metadata.name if node.metadata else None) or ""
        labels = (node.metadata.labels if node.metadata else None) or {}
        handlers = (
            runtimeclasses.hyperv_handlers(build)
            if labels.get(names.HYPERV_LABEL) == names.TRUE
            else ()
        )
        contents: tuple[transfer.Content, ...] = desired_mod.node_files(
            inputs,
            self.instance,
            build=build,
            endpoint=endpoint,
            token=None,
            hyperv_handlers=handlers,
        )
        files = {item.destination: item.sha256 for item in contents}
        files.update(_exporter_files(inputs, node))
        profile = inputs.settings.network_profile
        expectation = None
        if profile is settings.NetworkProfile.OVN_HYBRID:
            annotations = (node.metadata.annotations if node.metadata else None) or {}
            subnet = annotations.get(names.HYBRID_OVERLAY_SUBNET_ANNOTATION)
            if not subnet:
                raise ValueError(
                    f"node {node_name} has no {names.HYBRID_OVERLAY_SUBNET_ANNOTATION}"
                )
            expectation = NetworkExpectation(
                node_name, subnet, inputs.settings.service_cidr, inputs.settings.debug
            )
        return Expected(
            services=desired_mod.services_of(inputs, self.instance, node_name, endpoint.server),
            left_stopped=desired_mod.left_stopped(inputs),
            foreign=services.foreign_services(profile),
            files=files,
            network=expectation,
        )


async def probe(
    client: kube.Client, instance: Instance, inputs: Inputs, node: Node
) -> tuple[Finding, ...]:
    """Look at a configured host once (ONE exec) and return what differs from its desired state.

    Raises:
        HostKeyChangedError: The host presented another key than the pinned one.
        ConfigurationError: No connection, no answer, an answer of another shape, or a desired
            state that cannot be computed (the message says which).
    """
    planner_ = Planner(inputs, instance, node)
    try:
        endpoint = await planner_.endpoint(client)
        first = planner_.expected(endpoint, _build_of(node))
    except (bootstrap.BootstrapError, ValueError, services.ServiceSpecError) as exc:
        raise ConfigurationError(instance.address, Step.DRIFT_PROBE, str(exc)) from None
    command = commands.drift_probe(first.service_names, first.paths, hns=first.network is not None)
    runner = await runner_mod.connect(
        client, instance, inputs, node, within=inputs.settings.ssh_connect_timeout
    )
    runner.step = Step.DRIFT_PROBE
    try:
        result = await runner.check(command, "drift probe", clean_stderr=True)
        report = parsed(runner, probeanswers.parse_probe, result)
    finally:
        await runner.close()
    expected = (
        planner_.expected(endpoint, report.build) if report.build != _build_of(node) else first
    )
    return compare(expected, report)
