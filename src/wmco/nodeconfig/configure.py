r"""Configure ONE Windows instance into a Ready node: the list of its steps.

Every step first looks at the host or the cluster and only then changes what differs, so the
sequence can be interrupted anywhere (operator killed, connection dropped, host rebooted) and run
again from the start without harm. The order on the host is the rule of contract §5 / issue 8 §4:
*compute what differs, stop exactly the services whose held files or definitions change, write,
then create / change / start*; nothing else restarts, and files that change live (the kubelet's
client CA, the bootstrap kubeconfig, the CNI configuration, hns.psm1) never stop anything.

1. ``connect``; ``identify`` (:func:`wmco.nodeconfig.converge.look`: ONE exec answers the host
   name, build, Containers feature, kubelet client certificate, every managed service and the
   digest of every file this pass may write); ``containers-feature`` (rebooting when Windows
   asks, then one more look), ``hyperv`` (:mod:`.hyperv`: only with the ``hyperv`` setting on;
   may install the role and reboot);
2. ``bootstrap-files``: the files the operator generates for this node (:mod:`.hostfiles`,
   :mod:`.desired`; a bootstrap token and kubeconfig only when the kubelet has no valid client
   certificate);
   ``exporter-tls``: windows_exporter's web config, and a serving certificate when one is due
   (:mod:`.exportertls`; without an exporter CA, windows_exporter is left stopped);
3. ``changes``, ``stop-services``, ``files``, ``services`` (:func:`.converge.converge_services`):
   what differs, the stops of :func:`wmco.windows.planner.plan_services`, the files that differ
   as archives over one SFTP session, then ONE script that makes the directories, unpacks,
   checks every digest and creates / changes / starts containerd, kubelet, hybrid-overlay-node
   and windows_exporter (kube-proxy waits for step 4);
4. ``ovn-hybrid`` only: ``node-subnet``, ``hns-network``, ``cni-config``, ``vip-endpoint``,
   ``kube-proxy`` (:mod:`.overlay`);
5. ``node-ready`` (``hostprocess``: NotReady until the cluster's CNI DaemonSet writes its
   configuration), ``node-metadata``.

A fresh ``ovn-hybrid`` host takes about eight execs (two looks around the feature's reboot, the
feature install, the reboot, the script, the network's look, the VIP endpoint, the network's
script) and one SFTP session (issue 12 §3).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Awaitable, Callable

from lightkube.resources.core_v1 import Node

from wmco import kube, settings
from wmco.cluster import clientca
from wmco.nodeconfig import (
    bootstrap,
    converge,
    exportertls,
    hostkeys,
    hyperv,
    network,
    node,
    slots,
    upgrade,
)
from wmco.nodeconfig import desired as desired_mod
from wmco.nodeconfig import runner as runner_mod
from wmco.nodeconfig.instance import (
    ConfigurationError,
    Inputs,
    Instance,
    Outcome,
    Progress,
    Step,
    no_progress,
)
from wmco.nodeconfig.runner import Runner, parsed
from wmco.windows import (
    answers,
    commands,
    configfiles,
    layout,
    probeanswers,
    services,
    transfer,
)

HOSTPROCESS_HINT = (
    "on the hostprocess profile the node needs the cluster's CNI DaemonSet (flannel, Calico, "
    "Antrea as HostProcess pods) to write its configuration to "
    f"{layout.HOSTPROCESS_CNI_CONF_DIR} and its plugins to {layout.HOSTPROCESS_CNI_BIN_DIR}"
)
HOSTPROCESS_WAITING = (
    "waiting for Ready: it stays NotReady (container runtime network not ready: cni plugin not "
    f"initialized) until the cluster's CNI DaemonSet writes its configuration to "
    f"{layout.HOSTPROCESS_CNI_CONF_DIR}"
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Host:
    """What ``identify`` learnt."""

    node_name: str
    build: int


def identify(runner: Runner, existing: Node | None, report: probeanswers.ProbeReport) -> _Host:
    """The node name (lower-case host name) and the Windows build, from the first look."""
    runner.step = Step.IDENTIFY
    node_name = report.node_name
    if node_name is None:
        raise runner.fail("the look at the host did not answer its host name")
    if existing is not None and existing.metadata and existing.metadata.name != node_name:
        raise runner.fail(
            f"the host calls itself {node_name!r} but node {existing.metadata.name!r} already "
            "has this address; rename the host back or delete that node"
        )
    return _Host(node_name, report.build)


async def ensure_containers_feature(
    runner: Runner,
    inputs: Inputs,
    progress: Progress,
    report: probeanswers.ProbeReport,
    relook: Callable[[], Awaitable[probeanswers.ProbeReport]],
    before_reboot: Callable[[], Awaitable[None]] | None = None,
) -> probeanswers.ProbeReport:
    """Enable the Containers feature, rebooting when Windows asks for it.

    ``before_reboot`` runs before that restart: a node that already serves pods is drained
    (:class:`wmco.nodeconfig.upgrade.RebootGuard`).

    Returns:
        The look at the host to go on with: ``report``, or a new look after a reboot.
    """
    runner.step = Step.CONTAINERS_FEATURE
    state = report.feature
    if state is None:
        raise runner.fail("the look at the host did not answer the Containers feature's state")
    if state is answers.FeatureState.ENABLED:
        return report
    # Windows installs the feature for about a minute while the operator only waits (slots.py).
    async with runner.slot.released():
        result = await runner.check(
            commands.enable_containers_feature(), "enable containers feature"
        )
    restart = parsed(runner, answers.parse_restart_needed, result)
    if not restart and state is not answers.FeatureState.ENABLE_PENDING:
        return await relook()
    settings_ = inputs.settings
    await runner_mod.reboot(
        runner, settings_.ssh_boot_deadline, settings_.ssh_command_timeout, before=before_reboot
    )
    report = await relook()
    if report.feature is not answers.FeatureState.ENABLED:
        raise runner.fail(f"Containers feature is {report.feature} after a reboot")
    await progress(Step.CONTAINERS_FEATURE, "Containers feature enabled (rebooted)")
    return report


def directories_of(inputs: Inputs) -> tuple[str, ...]:
    """The profile's directories and every payload destination directory."""
    return (
        *layout.required_directories(inputs.settings.network_profile),
        *inputs.payload.destination_directories,
    )


CLIENT_CERT_MARGIN = datetime.timedelta(minutes=10)
"""A kubelet client certificate that ends sooner than this gets a bootstrap token anyway."""


def needs_bootstrap_token(report: probeanswers.ProbeReport, existing: Node | None) -> bool:
    r"""Whether the kubelet needs a bootstrap token: it has no valid client certificate.

    The look at a host whose Node exists and is Ready holds the certificate block of
    ``C:\var\lib\kubelet\pki\kubelet-client-current.pem`` (the key stays on the host). Every
    other case gets a token: no Node, a Node not Ready, no file, a certificate that does not
    parse, is not valid yet, or ends within :data:`CLIENT_CERT_MARGIN`.
    """
    if existing is None or not node.node_is_ready(existing):
        return True
    found = report.certificate
    now = datetime.datetime.now(datetime.UTC)
    return found is None or not found.valid_for(now, CLIENT_CERT_MARGIN)


async def bootstrap_files(
    client: kube.Client,
    runner: Runner,
    instance: Instance,
    inputs: Inputs,
    host: _Host,
    report: probeanswers.ProbeReport,
    hyperv_handlers: tuple[str, ...] = (),
    existing: Node | None = None,
) -> tuple[tuple[transfer.Content, ...], str]:
    """Every file this node must hold before its services start, and the API server's URL.

    A bootstrap token is minted (and the bootstrap kubeconfig compared and written) only when
    the kubelet has no valid client certificate (:func:`needs_bootstrap_token`): a pass over a
    healthy node mints nothing and leaves that file alone.
    """
    runner.step = Step.BOOTSTRAP_FILES
    settings_ = inputs.settings
    if not isinstance(inputs.client_ca, clientca.ClientCa):
        raise runner.fail(inputs.client_ca.message)
    image = configfiles.pause_image(host.build, settings_.pause_image)
    if configfiles.pause_serves_build(image, host.build) is False:
        raise runner.fail(
            f"pause image {image} has no entry for Windows build {host.build}; use "
            f"{configfiles.DEFAULT_PAUSE_IMAGE} or newer (setting pause_image)"
        )
    try:
        endpoint = await bootstrap.cluster_endpoint(client, settings_)
    except bootstrap.BootstrapError as exc:
        raise runner.fail(str(exc)) from None
    token: bootstrap.Token | None = None
    if needs_bootstrap_token(report, existing):
        try:
            token = await bootstrap.issue_token(
                client, address=instance.address, node_name=host.node_name, settings=settings_
            )
        except kube.NotFound as exc:
            raise runner.fail(
                f"no bootstrap token: {exc.message}; the namespace {settings_.bootstrap_namespace} "
                "of the per-host bootstrap ServiceAccounts must exist (deploy/ creates it)"
            ) from None
    files = desired_mod.node_files(
        inputs,
        instance,
        build=host.build,
        endpoint=endpoint,
        token=token,
        hyperv_handlers=hyperv_handlers,
    )
    return files, endpoint.server


async def configure(
    client: kube.Client,
    instance: Instance,
    inputs: Inputs,
    *,
    progress: Progress = no_progress,
    slot: slots.Slot = slots.UNBOUNDED,
) -> Outcome:
    """Bring one instance to a Ready, labelled node; safe to call again at any point.

    ``slot`` is the caller's place among the hosts worked on at once: it is let go while the
    flow only waits (for SSH to answer, a reboot, the node subnet, Ready), see :mod:`.slots`.

    Raises:
        HostKeyChangedError: The instance's host key is not the pinned one.
        ConfigurationError: A step failed (the message names the step and the cause).
    """
    started = time.monotonic()
    settings_ = inputs.settings
    profile = settings_.network_profile
    if profile is settings.NetworkProfile.AUTO:
        raise ConfigurationError(instance.address, Step.CONNECT, "network profile not resolved")
    existing = await node.find_node(client, instance)
    await progress(Step.CONNECT, f"connecting to {instance.username}@{instance.address}")
    connecting = time.monotonic()
    try:
        async with slot.released():  # a host that does not answer yet holds no place
            runner = await runner_mod.connect(client, instance, inputs, existing)
    except ConfigurationError:
        inputs.observer.step_finished(Step.CONNECT, time.monotonic() - connecting)
        raise
    runner.slot = slot
    runner.time_steps(since=connecting)
    tally = converge.Tally()
    try:
        await progress(Step.IDENTIFY, "SSH reachable")

        async def relook() -> probeanswers.ProbeReport:
            return await converge.look(runner, inputs, existing)

        report = await relook()
        host = identify(runner, existing, report)
        # A restart of a node serving pods drains it first (issue 11); restored once Ready.
        guard = upgrade.RebootGuard.of(client, instance, existing, inputs)
        report = await ensure_containers_feature(
            runner, inputs, progress, report, relook, guard.before_reboot
        )
        # Hyper-V isolation (issue 10): decides containerd's runtimes and the node's hyperv label.
        reboots = runner.reboots
        isolation = await hyperv.ensure_hyperv(
            runner, inputs, host.build, progress, guard.before_reboot
        )
        if runner.reboots != reboots:  # the role's restart: services and files as they are now
            report = await relook()
        files, api_server_url = await bootstrap_files(
            client, runner, instance, inputs, host, report, isolation.handlers, existing
        )
        exporter = await exporter_tls(runner, instance, inputs, host, existing, progress, report)
        files = (*files, *(exporter.files if exporter else ()))
        try:
            desired = desired_mod.services_of(inputs, instance, host.node_name, api_server_url)
        except services.ServiceSpecError as exc:
            raise runner.fail(str(exc)) from None
        ovn = profile is settings.NetworkProfile.OVN_HYBRID
        plan, written = await converge.converge_services(
            runner,
            desired,
            files,
            report,
            progress=progress,
            remove=services.foreign_services(profile),
            deferred=(*((services.KUBE_PROXY,) if ovn else ()), *desired_mod.left_stopped(inputs)),
            directories=directories_of(inputs),
        )
        tally.add(plan, written, len(files))
        await progress(Step.SERVICES, f"{len(plan)} service steps; services running")
        if ovn:
            await network.configure_network(
                client, runner, instance, inputs, host.node_name, desired, progress, tally
            )
        # Nothing more goes to the host: the wait for Ready (minutes, at scale) holds neither a
        # place nor a connection (the host key stays known for the Node's annotations).
        await runner.close()
        async with slot.released():
            await wait_until_ready(client, runner, instance, inputs, host, progress)
        await guard.restore()
        runner.step = Step.NODE_METADATA
        await kube.patch(
            client,
            Node,
            host.node_name,
            hyperv.merge_metadata(
                node.node_metadata_patch(
                    instance,
                    inputs,
                    runner.host.host_key,
                    exporter_cert=exporter.record.to_annotation() if exporter else None,
                    pub_key_hash=runner.pub_key_hash,
                ),
                isolation,
            ),
        )
        await hostkeys.forget(client, settings_.namespace, instance.address)
        await bootstrap.delete_account(client, instance.address, settings_)
        await progress(Step.DONE, f"node {host.node_name} configured")
        return Outcome(
            node_name=host.node_name,
            files_written=tally.written,
            files_unchanged=tally.unchanged,
            services_restarted=tally.restarted,
            service_actions=tally.actions,
            seconds=time.monotonic() - started,
            hyperv_problem=isolation.problem,
        )
    finally:
        runner.finish_steps()
        await runner.close()


async def exporter_tls(
    runner: Runner,
    instance: Instance,
    inputs: Inputs,
    host: _Host,
    existing: Node | None,
    progress: Progress,
    report: probeanswers.ProbeReport,
) -> exportertls.ExporterTls | None:
    """windows_exporter's files for this pass; ``None`` (it stays stopped) without a CA."""
    runner.step = Step.EXPORTER_TLS
    if inputs.exporter_ca is None:
        await progress(
            Step.EXPORTER_TLS, "no exporter CA right now: windows_exporter is left stopped"
        )
        return None
    planned = exportertls.plan(
        runner, inputs.exporter_ca, instance, host.node_name, existing, report.hashes
    )
    if planned.reason is not None:
        await progress(
            Step.EXPORTER_TLS, f"issuing a windows_exporter certificate: {planned.reason}"
        )
    return planned


async def wait_until_ready(
    client: kube.Client,
    runner: Runner,
    instance: Instance,
    inputs: Inputs,
    host: _Host,
    progress: Progress,
) -> None:
    """Wait for the node to report Ready, saying what it waits for on each profile."""
    runner.step = Step.NODE_READY
    hostprocess = inputs.settings.network_profile is settings.NetworkProfile.HOSTPROCESS
    await node.wait_for_ready(
        client,
        instance,
        host.node_name,
        timeout=inputs.settings.node_ready_timeout,
        progress=progress,
        waiting=HOSTPROCESS_WAITING if hostprocess else "waiting for Ready",
        hint=HOSTPROCESS_HINT if hostprocess else node.READY_HINT,
    )
    await progress(Step.NODE_READY, f"node {host.node_name} Ready")
