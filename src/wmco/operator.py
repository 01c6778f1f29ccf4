"""Assemble and run the operator: one manager, its informers, controllers, probes and metrics.

``wmco run`` calls :func:`run`. Everything the operator does is a controller registered here:

* ``userdata``: Secret ``cloud-private-key`` → Secret ``windows-user-data``;
* ``rekey``: Secret ``cloud-private-key`` → Secret ``wmco-trusted-private-key`` (key rotation);
* ``csr``: strict approval of the kubelet CSRs of instances the operator configures;
* ``instances``: ConfigMap ``windows-instances`` → configured (or removed) nodes;
* ``machines``: Windows Machines → configured (or removed) nodes, when the Machine API is served;
* ``kubelet-client-ca``: reports which kubelet client CA bundle the nodes get, and a bad one;
* ``runtimeclass``: one RuntimeClass per Windows build of the managed nodes (and Hyper-V ones).
* ``monitoring``: the exporter CA Secret, Service, EndpointSlice and ServiceMonitor
  ``windows-exporter`` (the last only when prometheus-operator's CRD is served).

Before any of them, the ``auto`` network profile is resolved from the cluster
(:mod:`wmco.cluster.network`): every controller below sees ``ovn-hybrid`` or ``hostprocess``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

import wmco
from wmco import kube, names
from wmco.cluster import network as cluster_network
from wmco.controllers import clientca as clientca_controller
from wmco.controllers import csr as csr_controller
from wmco.controllers import hosts as hosts_mod
from wmco.controllers import instances as instances_controller
from wmco.controllers import machines as machines_controller
from wmco.controllers import monitoring as monitoring_controller
from wmco.controllers import rekey as rekey_controller
from wmco.controllers import runtimeclass as runtimeclass_controller
from wmco.controllers import userdata as userdata_controller
from wmco.nodeconfig import hostfiles
from wmco.payload import manifest as payload_manifest
from wmco.runtime import leader
from wmco.runtime import manager as manager_mod
from wmco.settings import NetworkProfile, Settings
from wmco.windows import archive

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The operator cannot start (the message says what to fix)."""


async def machine_api_served(client: kube.Client, namespace: str) -> bool:
    """Whether the cluster serves ``machine.openshift.io/v1beta1`` Machines."""
    try:
        await kube.list_objects(client, machines_controller.Machine, namespace=namespace)
    except kube.NotFound:
        return False
    except kube.Forbidden:
        # deploy/overlays/kubernetes grants no Machine API access: where the Machine API is not
        # installed, the operator is not given rights to it either.
        log.info("no right to read Machines in %s: the Machine API is not used", namespace)
        return False
    except kube.KubeError as exc:
        log.warning("cannot tell whether the Machine API is served (%s); assuming it is not", exc)
        return False
    return True


async def service_monitors_served(client: kube.Client, namespace: str) -> bool:
    """Whether ServiceMonitors are served; an API failure counts as not (they are polled)."""
    try:
        return await monitoring_controller.service_monitors_served(client, namespace)
    except kube.KubeError as exc:
        log.warning("cannot tell whether ServiceMonitors are served (%s); polling for them", exc)
        return False


def _identity() -> str:
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def build_manager(
    client: kube.Client,
    settings: Settings,
    payload: payload_manifest.Manifest,
    *,
    machine_api: bool,
    port: int | None = None,
    service_monitors: bool = False,
) -> manager_mod.Manager:
    """Create the manager with every controller registered (nothing runs yet).

    Raises:
        StartupError: ``settings.network_profile`` is still ``auto``: resolve it first
            (:func:`resolve_network_profile`).
    """
    if settings.network_profile is NetworkProfile.AUTO:
        raise StartupError(
            "the network profile is 'auto': resolve it first (operator.resolve_network_profile)"
        )
    host, _, bind_port = settings.probe_bind_address.rpartition(":")
    election = (
        leader.LeaderElectionConfig(
            namespace=settings.namespace, name=names.LEADER_ELECTION_LEASE, identity=_identity()
        )
        if settings.leader_election
        else None
    )
    manager = manager_mod.Manager(
        client,
        host=host or "0.0.0.0",
        port=int(bind_port) if port is None else port,
        extra_binds=(
            (manager_mod.parse_bind_address(settings.metrics_bind_address),)
            if settings.metrics_bind_address and port is None
            else ()
        ),
        leader_election=election,
        resync_period=300.0,
        workers=settings.concurrency,
    )
    recorder = kube.EventRecorder(client, component=names.EVENT_COMPONENT)
    hosts = hosts_mod.setup(
        manager, settings, recorder, payload, names.node_version(wmco.__version__, payload.version)
    )
    userdata_controller.setup(manager, settings, recorder)
    rekey_controller.setup(manager, hosts)
    csr_controller.setup(manager, settings, recorder)
    instances_controller.setup(manager, hosts)
    clientca_controller.setup(manager, hosts)
    runtimeclass_controller.setup(manager, settings, recorder)
    monitoring_controller.setup(manager, hosts, service_monitors=service_monitors)
    if machine_api:
        machines_controller.setup(manager, hosts)
    else:
        log.info(
            "the Machine API is not served: only listed instances (windows-instances) are managed"
        )
    return manager


def load_payload(settings: Settings) -> payload_manifest.Manifest:
    """Load and verify the payload the operator copies to hosts.

    Raises:
        StartupError: The payload folder is missing or does not match its manifest.
    """
    try:
        payload = payload_manifest.load_and_verify(settings.payload_dir)
    except payload_manifest.PayloadError as exc:
        raise StartupError(f"payload {settings.payload_dir}: {exc}") from exc
    clashes = hostfiles.clashes(payload)
    if clashes:
        raise StartupError(
            f"payload {settings.payload_dir}: the operator generates {', '.join(clashes)} itself; "
            "remove them from the manifest"
        )
    return payload


async def resolve_network_profile(client: kube.Client, settings: Settings) -> Settings:
    """The settings with ``network_profile`` resolved from the cluster when it is ``auto``.

    Raises:
        StartupError: No profile fits the cluster, or its network configuration is unreadable.
    """
    try:
        resolved = await cluster_network.resolve(client, settings)
    except cluster_network.NetworkProfileError as exc:
        raise StartupError(str(exc)) from exc
    except kube.KubeError as exc:
        raise StartupError(f"cannot read the cluster's network configuration: {exc}") from exc
    log.info(
        "network profile %s%s",
        resolved.network_profile,
        " (auto)" if settings.network_profile is not resolved.network_profile else "",
    )
    return resolved


async def run(settings: Settings, *, kubeconfig: str | None = None) -> None:
    """Run the operator until cancelled.

    Raises:
        StartupError: The payload or the cluster connection is unusable.
        leader.LeadershipLost: Another replica took over; exit so the pod restarts.
    """
    payload = load_payload(settings)
    try:
        client = kube.make_client(kubeconfig, namespace=settings.namespace)
    except kube.KubeError as exc:
        raise StartupError(str(exc)) from exc
    try:
        settings = await resolve_network_profile(client, settings)
        machine_api = await machine_api_served(client, settings.machine_api_namespace)
        manager = build_manager(
            client,
            settings,
            payload,
            machine_api=machine_api,
            service_monitors=await service_monitors_served(client, settings.namespace),
        )
        log.info(
            "wmco %s starting: namespace %s, %d hosts at once, payload %s (%d files)",
            wmco.__version__,
            settings.namespace,
            settings.concurrency,
            payload.version,
            len(payload.files),
        )
        warm = asyncio.create_task(prewarm_archive(payload), name="payload-archive")
        try:
            await manager.run()
        finally:
            warm.cancel()
    finally:
        await asyncio.shield(client.close())


async def prewarm_archive(payload: payload_manifest.Manifest) -> None:
    """Compress the payload for fresh hosts now, while the first ones install their features.

    A fresh host needs the archive of every payload file only after its Containers feature and
    reboot (minutes); building it at start-up (a worker thread, once per payload version) keeps
    that compression off the first host's path. A failure is only logged: the first host builds
    it again, and reports the error there.
    """
    try:
        path = await archive.CACHE.archive(hostfiles.payload_files(payload))
    except (OSError, ValueError) as exc:
        log.warning("payload archive not built ahead: %s", exc)
        return
    log.info("payload archive ready: %s (%d bytes)", path.name, path.stat().st_size)
