r"""The ``ovn-hybrid`` network steps of one host, after hybrid-overlay-node has started.

In order (windows-networking.md §1.2, contract §3 to §5):

1. the node's ``k8s.ovn.org/hybrid-overlay-node-subnet`` annotation (set by OVN-Kubernetes) is
   awaited by the flow (:func:`wmco.nodeconfig.node.wait_for_annotation`);
2. :func:`wait_for_overlay_network`: hybrid-overlay-node makes ``OVNKubernetesHybridOverlayNetwork``
   with that subnet; polled over SSH with a deadline (making its base network drops every SSH
   connection once: the runner redials);
3. :func:`ensure_vip_endpoint`: the host endpoint ``VIPEndpoint`` on that network (reused when
   one is there, a stale one on another network removed first); its address becomes kube-proxy's
   ``sourceVip`` (:func:`kube_proxy_content`) and is reserved in host-local's state
   (:func:`ipam_reservation`), so that after a reboot, when kube-proxy creates the sourceVip
   endpoint again by itself, no pod has been given that address;
4. ``C:\k\cni\config\cni.conf`` from the network's subnet and ``ManagementIP`` (a live file:
   containerd loads it, nothing restarts), the reservation and ``kube-proxy.conf``, written with
   kube-proxy's service in one pass (:func:`configure_network`).

The decisions (:func:`find_overlay_network`, :func:`decide_vip_endpoint`) are pure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import ipaddress
import time
from collections.abc import Callable

from wmco import kube, names
from wmco.nodeconfig import converge, node
from wmco.nodeconfig.instance import Inputs, Instance, Progress, Step
from wmco.nodeconfig.runner import Runner, parsed
from wmco.windows import answers, commands, configfiles, layout, probeanswers, services, transfer

POLL_INTERVAL = 1.0
"""Seconds between two looks at the host's HNS networks."""


def _same_network(prefix: str | None, subnet: str) -> bool:
    if not prefix:
        return False
    try:
        return ipaddress.ip_network(prefix, strict=False) == ipaddress.ip_network(
            subnet, strict=False
        )
    except ValueError:
        return False


def find_overlay_network(
    networks: tuple[answers.HnsNetwork, ...], subnet: str
) -> answers.HnsNetwork | None:
    """The pods' overlay network once hybrid-overlay-node made it for ``subnet``.

    It must be named ``OVNKubernetesHybridOverlayNetwork``, be of type ``Overlay``, have the
    node's subnet as ``Subnets[0].AddressPrefix`` (an older network of a previous subnet does not
    count: hybrid-overlay-node is about to re-create it) and a ``ManagementIP``.
    """
    for network in networks:
        if (
            network.name == names.HYBRID_OVERLAY_NETWORK
            and network.type.lower() == "overlay"
            and _same_network(network.address_prefix, subnet)
            and network.management_ip
        ):
            return network
    return None


def ipam_glob() -> str:
    """The host-local state files of the overlay network (the sourceVip's reservation among them)."""
    return f"{layout.CNI_STATE_DIR}\\networks\\{names.HYBRID_OVERLAY_NETWORK}\\*"


def network_look() -> str:
    """ONE read-only command for the network steps: HNS, the network files, kube-proxy."""
    return commands.drift_probe(
        (services.KUBE_PROXY,),
        (layout.OVN_CNI_CONFIG, layout.KUBE_PROXY_CONFIG),
        hns=True,
        globs=(ipam_glob(),),
    )


async def wait_for_overlay_network(
    runner: Runner, subnet: str, *, timeout: float, progress: Progress
) -> tuple[answers.HnsNetwork, probeanswers.ProbeReport]:
    """Look at the host's network until the overlay network of ``subnet`` exists.

    Each look is ONE exec (:func:`network_look`), whose answer the next steps decide from.

    Raises:
        ConfigurationError: Not there before the deadline (the message says what was seen).
    """
    await progress(
        Step.HNS_NETWORK,
        f"waiting for hybrid-overlay-node to create HNS network {names.HYBRID_OVERLAY_NETWORK} "
        f"for {subnet}",
    )
    deadline = time.monotonic() + timeout
    while True:
        result = await runner.check(network_look(), "HNS network list", clean_stderr=True)
        report = parsed(runner, probeanswers.parse_probe, result)
        found = find_overlay_network(report.networks, subnet)
        if found is not None:
            return found, report
        if time.monotonic() > deadline:
            seen = (
                ", ".join(f"{n.name} ({n.type} {n.address_prefix})" for n in report.networks)
                or "none"
            )
            raise runner.fail(
                f"HNS network {names.HYBRID_OVERLAY_NETWORK} for {subnet} not created after "
                f"{timeout:.0f}s (networks: {seen}); see "
                f"{layout.HYBRID_OVERLAY_LOG} on the host"
            )
        await asyncio.sleep(POLL_INTERVAL)


def cni_content(network: answers.HnsNetwork, service_cidr: str) -> transfer.Content:
    """``cni.conf`` for this network.

    Raises:
        ValueError: The network lacks its prefix or management IP.
    """
    if not network.address_prefix or not network.management_ip:
        raise ValueError(f"HNS network {network.name} has no subnet or management IP")
    text = configfiles.cni_config(
        configfiles.OverlayNetwork(network.address_prefix, network.management_ip), service_cidr
    )
    return transfer.Content.of_text(layout.OVN_CNI_CONFIG, text, "CNI configuration")


class VipAction(enum.StrEnum):
    """What to do about the VIP endpoint."""

    REUSE = "reuse"
    CREATE = "create"
    REPLACE = "replace"
    """Remove every ``VIPEndpoint`` (stale, or of unknown state) and create a new one."""


@dataclasses.dataclass(frozen=True, slots=True)
class VipDecision:
    """The decision and, for ``REUSE``, the endpoint to reuse."""

    action: VipAction
    endpoint: answers.HnsEndpoint | None = None


def decide_vip_endpoint(
    endpoints: tuple[answers.HnsEndpoint, ...],
    network: answers.HnsNetwork,
    *,
    distrust: bool = False,
) -> VipDecision:
    """Decide whether the host's ``VIPEndpoint`` can serve as kube-proxy's ``sourceVip``.

    Args:
        endpoints: The host's endpoints.
        network: The overlay network it must be on.
        distrust: A creation attempt lost its connection: whatever it left may not be attached to
            the host, so replace it.

    Returns:
        ``REUSE`` the one on this network with an address (when it is the only VIP endpoint);
        ``REPLACE`` when any other ``VIPEndpoint`` exists (on a network that was re-created, or
        without an address); ``CREATE`` when there is none.
    """
    vips = [endpoint for endpoint in endpoints if endpoint.name == names.VIP_ENDPOINT]
    if not vips:
        return VipDecision(VipAction.CREATE)
    good = [
        endpoint
        for endpoint in vips
        if (endpoint.virtual_network or "").lower() == network.id.lower() and endpoint.ip_address
    ]
    if distrust or len(good) != len(vips) or len(good) > 1:
        return VipDecision(VipAction.REPLACE)
    return VipDecision(VipAction.REUSE, good[0])


def adoptable_source_vip(
    endpoints: tuple[answers.HnsEndpoint, ...],
    network: answers.HnsNetwork,
    configured: str | None,
    config_for: Callable[[answers.HnsEndpoint], transfer.Content],
) -> answers.HnsEndpoint | None:
    """The endpoint kube-proxy made for the sourceVip it is configured with, if there is one.

    After a reboot HNS has forgotten ``VIPEndpoint``; kube-proxy creates its sourceVip endpoint
    again by itself (no name, the configured address). Such an endpoint serves as well: keeping
    its address keeps ``kube-proxy.conf`` as it is, so nothing restarts.

    Args:
        endpoints: The host's endpoints (none named ``VIPEndpoint``).
        network: The overlay network.
        configured: SHA-256 of the host's ``kube-proxy.conf`` (``None``: there is none).
        config_for: The ``kube-proxy.conf`` the operator writes for an endpoint.

    Returns:
        The endpoint on ``network`` whose address gives exactly the configured file, else None.
    """
    if configured is None:
        return None
    for endpoint in endpoints:
        if (endpoint.virtual_network or "").lower() != network.id.lower():
            continue
        if not endpoint.ip_address or endpoint.name == names.VIP_ENDPOINT:
            continue
        try:
            content = config_for(endpoint)
        except ValueError:  # an address kube-proxy.conf cannot carry: not the one it names
            continue
        if content.sha256 == configured:
            return endpoint
    return None


async def ensure_vip_endpoint(
    runner: Runner,
    network: answers.HnsNetwork,
    *,
    timeout: float,
    config_for: Callable[[answers.HnsEndpoint], transfer.Content] | None = None,
    seen: probeanswers.ProbeReport | None = None,
) -> answers.HnsEndpoint:
    """Make sure one sourceVip endpoint is on the overlay network: ``VIPEndpoint``, or kube-proxy's.

    Looks first, so that a pass over a configured host changes nothing; creation is not
    idempotent, so a creation that lost its connection is followed by a fresh look (and a
    replacement) rather than a blind retry. Without any ``VIPEndpoint`` (after a reboot), the
    endpoint kube-proxy re-created for its configured sourceVip is adopted
    (:func:`adoptable_source_vip`; one look at ``kube-proxy.conf``'s digest).

    Args:
        runner: The host.
        network: The overlay network.
        timeout: Seconds before giving up.
        config_for: The ``kube-proxy.conf`` the operator writes for an endpoint (None: adopt
            nothing).
        seen: A look at the host's network just taken (:func:`network_look`): its endpoints
            and ``kube-proxy.conf`` digest serve the first decision, without another exec.

    Raises:
        ConfigurationError: HNS refused, or no usable endpoint before the deadline.
    """
    deadline = time.monotonic() + timeout
    distrust = False
    looked = False
    while True:
        if seen is not None:
            endpoints = seen.endpoints
        else:
            listed = await runner.check(
                commands.list_hns_endpoints(), "HNS endpoint list", clean_stderr=True
            )
            endpoints = parsed(runner, answers.parse_hns_endpoints, listed)
        decision = decide_vip_endpoint(endpoints, network, distrust=distrust)
        if decision.action is VipAction.REUSE:
            assert decision.endpoint is not None
            return decision.endpoint
        if decision.action is VipAction.CREATE and config_for is not None and not looked:
            looked = True
            configured = (
                seen.hashes.get(layout.KUBE_PROXY_CONFIG.lower())
                if seen is not None
                else await transfer.remote_sha256(runner, layout.KUBE_PROXY_CONFIG)
            )
            adopted = adoptable_source_vip(endpoints, network, configured, config_for)
            if adopted is not None:
                return adopted
        seen = None  # from here on, every decision follows a fresh listing
        if time.monotonic() > deadline:
            raise runner.fail(f"no usable {names.VIP_ENDPOINT} after {timeout:.0f}s")
        if decision.action is VipAction.REPLACE:
            await runner.check(
                commands.remove_hns_endpoints(names.VIP_ENDPOINT),
                f"removal of the stale {names.VIP_ENDPOINT}",
            )
        created = await runner.attempt(
            commands.create_host_endpoint(
                network.id,
                name=names.VIP_ENDPOINT,
                module=layout.HNS_MODULE,
                compartment=names.HOST_COMPARTMENT,
            ),
            f"creation of {names.VIP_ENDPOINT}",
        )
        if created is None:
            distrust = True
            continue
        distrust = False
        made = parsed(runner, answers.parse_hns_endpoints, created)
        if len(made) == 1 and made[0].ip_address:
            return made[0]
        # An answer without an address: look again (and replace it) rather than trust it.
        distrust = True


def ipam_reservation(endpoint: answers.HnsEndpoint) -> transfer.Content:
    r"""The host-local record that the sourceVip address is taken, so that no pod is given it.

    The pods' IPAM (``cni.conf``'s ``host-local``) knows nothing of HNS. After a reboot HNS has
    forgotten every endpoint, and kube-proxy creates its sourceVip endpoint again only once the
    overlay network is back, in a race with the pods' sandboxes: without this record host-local
    could hand the address to a pod, and kube-proxy would then fail to create its endpoint at
    every sync (kubernetes#100962). A file named after the address in host-local's directory of
    the network is what host-local's own ADD writes (``<container id>`` CRLF ``<interface>``).

    Raises:
        ValueError: The endpoint has no address.
    """
    if not endpoint.ip_address:
        raise ValueError(f"{names.VIP_ENDPOINT} has no IP address")
    directory = f"{layout.CNI_STATE_DIR}\\networks\\{names.HYBRID_OVERLAY_NETWORK}"
    path = f"{directory}\\{endpoint.ip_address}"
    return transfer.Content.of_text(
        path, f"{names.VIP_ENDPOINT}\r\neth0", "host-local reservation of the sourceVip"
    )


def kube_proxy_content(
    node_name: str, node_subnet: str, endpoint: answers.HnsEndpoint, *, debug: bool
) -> transfer.Content:
    """``kube-proxy.conf`` with the VIP endpoint's address as ``sourceVip``.

    Raises:
        ValueError: The endpoint has no address, or the subnet is not a network.
    """
    if not endpoint.ip_address:
        raise ValueError(f"{names.VIP_ENDPOINT} has no IP address")
    text = configfiles.kube_proxy_config(
        configfiles.KubeProxyInputs(
            node_name=node_name,
            node_subnet=node_subnet,
            source_vip=endpoint.ip_address,
            debug=debug,
        )
    )
    return transfer.Content.of_text(layout.KUBE_PROXY_CONFIG, text, "kube-proxy configuration")


async def configure_network(
    client: kube.Client,
    runner: Runner,
    instance: Instance,
    inputs: Inputs,
    node_name: str,
    desired: tuple[services.ServiceSpec, ...],
    progress: Progress,
    tally: converge.Tally,
) -> None:
    """The ``ovn-hybrid`` steps: subnet, overlay network, VIP endpoint, then ONE script.

    After the subnet (the API server) and the network (one look per second until
    hybrid-overlay-node made it, :func:`wait_for_overlay_network`), the VIP endpoint is decided
    from that same look (created by one exec when there is none); ``cni.conf``, the sourceVip's
    reservation and ``kube-proxy.conf`` then go with kube-proxy's service in one
    :func:`wmco.nodeconfig.converge.converge_services` pass.
    """
    settings_ = inputs.settings
    runner.step = Step.NODE_SUBNET
    async with runner.slot.released():  # OVN-Kubernetes allocates it; nothing is sent meanwhile
        subnet = await node.wait_for_annotation(
            client,
            instance,
            node_name,
            names.HYBRID_OVERLAY_SUBNET_ANNOTATION,
            timeout=settings_.network_timeout,
            progress=progress,
            step=Step.NODE_SUBNET,
        )
    runner.step = Step.HNS_NETWORK
    overlay, report = await wait_for_overlay_network(
        runner, subnet, timeout=settings_.network_timeout, progress=progress
    )

    def config_for(endpoint: answers.HnsEndpoint) -> transfer.Content:
        return kube_proxy_content(node_name, subnet, endpoint, debug=settings_.debug)

    runner.step = Step.VIP_ENDPOINT
    endpoint = await ensure_vip_endpoint(
        runner, overlay, timeout=settings_.network_timeout, config_for=config_for, seen=report
    )
    await progress(Step.VIP_ENDPOINT, f"{names.VIP_ENDPOINT} {endpoint.ip_address}")
    runner.step = Step.CNI_CONFIG
    try:
        files = (
            cni_content(overlay, settings_.service_cidr),
            ipam_reservation(endpoint),
            config_for(endpoint),
        )
    except ValueError as exc:
        raise runner.fail(str(exc)) from None
    proxy = tuple(spec for spec in desired if spec.name == services.KUBE_PROXY)
    plan, changed = await converge.converge_services(
        runner,
        proxy,
        files,
        report,
        progress=progress,
        observe=(services.KUBE_PROXY,),
        step=Step.KUBE_PROXY,  # the files are inline (Content.of_text): no upload after the blip
    )
    tally.add(plan, changed, len(files))
    await progress(
        Step.KUBE_PROXY, f"{changed} of {len(files)} network files written; kube-proxy running"
    )
