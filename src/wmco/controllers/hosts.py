"""What the Machine and the listed-instance controllers share: configuring hosts, bounded.

Both controllers turn "this instance should be a node" into a call of
:func:`wmco.nodeconfig.configure.configure` and "this instance is gone" into
:func:`wmco.nodeconfig.deconfigure.deconfigure`. This module owns the parts that are the same for
both: the shared bound on hosts worked on at once (``settings.concurrency`` across both
controllers), the fast path that skips SSH for a node already configured by this version with the
current key and client CA, and the decision of what a host needs. Beside it:
:mod:`.hostinputs` reads what every flow is given (private key, CAs, previous keys),
:mod:`.hostreport` turns outcomes into log lines and Events, :mod:`.rekeyhost` moves a host to a
new SSH key.

The kubelet client CA is read from the informers of its source ConfigMaps
(:func:`wmco.cluster.clientca.sources`); both controllers watch them (:func:`ca_changed` filters
out resyncs), so a rotated bundle re-queues every host, and the up-to-date check, which compares
the bundle's digest with the Node's ``kubelet-ca-hash``, sends exactly those hosts through the
flow, which then rewrites only ``kubelet-ca.crt``.

**Cost per host** (issue 12 §5): every check of a reconcile reads the shared informers' caches,
and the Node of a host is found through the Node informer's address indexes
(:func:`wmco.nodeconfig.node.index_nodes`), not by walking every Node. The flows run inside
:func:`wmco.nodeconfig.node.using_nodes`, so they too find their Node and wait for it to become
Ready on that informer: a host joining costs the API server no list and no request per second.

The exporter CA (:mod:`wmco.cluster.exportersecret`) is handled the same way: its Secret's
informer re-queues every host when it changes, and the up-to-date check also asks whether the
host's windows_exporter certificate is still good (:func:`wmco.nodeconfig.exportertls.is_current`).
Each host's phase (configuring, ready, failed) is kept for the ``wmco_hosts`` metric.

A node that exists and serves pods is reconfigured for another version, or rebooted because it
asks for it, only through the roll-out gate (:mod:`wmco.controllers.rollout`): at most
``maxUnavailable`` at a time, cordoned and drained first, uncordoned after.

Drift (issue 11): an up-to-date host gets one read-only probe (:mod:`wmco.nodeconfig.probe`, one
SSH exec) at most every ``settings.resync_interval``, however often other events re-queue it;
each reconcile of such a host asks to be re-queued when its next probe is due. What the probe
finds is repaired by the normal configure flow, and a ``HostDriftRepaired`` Event on the Node
says what was found.

Key rotation (issue 11): :meth:`Hosts.inputs` also carries the previous private keys of Secret
``wmco-trusted-private-key`` (:mod:`wmco.cluster.trustedkeys`), so every connection offers them
after the current key; :meth:`Hosts.converge` first moves a configured host whose Node carries
another ``pub-key-hash`` to the current key (:mod:`.rekeyhost`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from lightkube.resources.core_v1 import ConfigMap, Node, Secret

from wmco import kube, names
from wmco.cluster import clientca, exportersecret
from wmco.controllers import hostinputs, hostreport, rekeyhost, rollout
from wmco.nodeconfig import configure, deconfigure, exportertls, hyperv, probe, rekey
from wmco.nodeconfig import instance as instance_mod
from wmco.nodeconfig import node as node_mod
from wmco.nodeconfig import slots as slots_mod
from wmco.payload import manifest as payload_manifest
from wmco.runtime import controller as controller_mod
from wmco.runtime import informer as informer_mod
from wmco.runtime import manager as manager_mod
from wmco.runtime import metrics as metrics_mod
from wmco.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Hosts:
    """Shared state of the host-configuring controllers.

    ``nodes`` and ``private_keys`` are the manager's shared informers: the checks made on every
    reconcile (is this node already configured? which key?) read their caches, not the API.
    ``nodes`` is indexed by address (:func:`wmco.nodeconfig.node.index_nodes`).
    """

    client: kube.Client
    settings: Settings
    recorder: kube.EventRecorder
    payload: payload_manifest.Manifest
    version: str
    nodes: informer_mod.Informer[Node]
    private_keys: informer_mod.Informer[Secret]
    ca_sources: tuple[informer_mod.Informer[ConfigMap], ...] = ()
    exporter_secrets: informer_mod.Informer[Secret] | None = None
    metrics: metrics_mod.Metrics = dataclasses.field(default_factory=metrics_mod.Metrics)
    trusted_keys: informer_mod.Informer[Secret] | None = None
    joining: set[str] = dataclasses.field(default_factory=set)
    """Hosts without a configured Node yet (phase keys): they may trust a previous key."""
    sources: hostinputs.InputSources = dataclasses.field(init=False)
    probed: dict[str, float] = dataclasses.field(default_factory=dict)
    """Host key to the monotonic time of its last drift probe or configuration."""
    slots: asyncio.Semaphore = dataclasses.field(init=False)
    uploads: slots_mod.UploadBudget = dataclasses.field(init=False)
    gate: rollout.Gate = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        node_mod.index_nodes(self.nodes)
        self.slots = asyncio.Semaphore(self.settings.concurrency)
        self.uploads = slots_mod.UploadBudget.of_mib(self.settings.upload_memory_mib)
        self.gate = rollout.Gate(self.client, self.recorder, self.settings, self.nodes)
        self.sources = hostinputs.InputSources(
            client=self.client,
            settings=self.settings,
            payload=self.payload,
            version=self.version,
            private_keys=self.private_keys,
            ca_sources=self.ca_sources,
            exporter_secrets=self.exporter_secrets,
            trusted_keys=self.trusted_keys,
            metrics=self.metrics,
        )

    @property
    def exporter_cas(self) -> exportersecret.CaKeeper:
        """The exporter CA as the flows get it."""
        return self.sources.exporter_cas

    def forget_host(self, key: str) -> None:
        """A host is no longer managed: drop it from the phase counts and the probe times."""
        self.metrics.hosts.forget(key)
        self.probed.pop(key, None)
        self.joining.discard(key)

    def client_ca(self) -> clientca.Choice:
        """The kubelet client CA bundle as the source ConfigMaps say now (from the caches)."""
        return self.sources.client_ca()

    async def inputs(self) -> instance_mod.Inputs | None:
        """The inputs of the flow, or ``None`` while the private key is missing or unusable."""
        return await self.sources.inputs()

    def node_of(self, instance: instance_mod.Instance) -> Node | None:
        """The instance's Node as cached (an index lookup)."""
        return node_mod.cached_node(self.nodes, instance)

    async def up_to_date(
        self, instance: instance_mod.Instance, inputs: instance_mod.Inputs
    ) -> bool:
        """Whether the node is Ready and configured by us with this key, CAs and Hyper-V setting."""
        return self.node_up_to_date(self.node_of(instance), inputs)

    def node_up_to_date(self, node: Node | None, inputs: instance_mod.Inputs) -> bool:
        """:meth:`up_to_date` of a given Node (e.g. as a patch returned it)."""
        return (
            node_mod.is_up_to_date(node, inputs.version, inputs.pub_key_hash, inputs.client_ca_hash)
            and hyperv.settled(node, inputs.settings.hyperv)
            and node_mod.node_is_ready(node)
            and exportertls.is_current(node, inputs.exporter_ca)
            and not rollout.pending(node)
        )

    async def configure_instance(
        self, instance: instance_mod.Instance, inputs: instance_mod.Inputs
    ) -> instance_mod.Outcome:
        """Configure one instance in a place of the pool, let go while the host only waits."""

        async def progress(step: instance_mod.Step, detail: str) -> None:
            log.info("instance %s: %s: %s", instance.address, step, detail)

        async with slots_mod.Slot(self.slots, self.uploads) as slot:
            with node_mod.using_nodes(self.nodes):
                return await configure.configure(
                    self.client, instance, inputs, progress=progress, slot=slot
                )

    async def configure_gated(
        self, instance: instance_mod.Instance, inputs: instance_mod.Inputs, subject: str
    ) -> instance_mod.Outcome | rollout.Held:
        """Configure a new host at once; an existing node's upgrade or reboot through the gate."""
        node = self.node_of(instance)
        name = node.metadata.name if node is not None and node.metadata else None
        if name is None or rollout.work_for(node, inputs.version) is None:
            return await self.configure_instance(instance, inputs)
        return await self.gate.run(instance, inputs, name, self.configure_instance, subject)

    async def converge(
        self,
        instance: instance_mod.Instance,
        inputs: instance_mod.Inputs,
        *,
        subject: str,
        ref: kube.ObjectRef | None,
        setup_reason: str,
        failure_reason: str,
    ) -> controller_mod.Result | None:
        """Configure ``instance`` unless it is up to date, and report the outcome in an Event.

        Args:
            instance: The instance.
            inputs: Cluster-wide inputs.
            subject: How messages name it ("machine m-1", "instance 10.0.0.5").
            ref: The object the Events are about (``None``: log only).
            setup_reason: Event reason on success.
            failure_reason: Event reason on failure (a changed host key has its own).

        Returns:
            A requeue when the next drift probe is due; a backoff requeue after a failure.
        """
        phases = self.metrics.hosts
        key = phase_key(instance)
        drift: tuple[probe.Finding, ...] = ()
        node = self.node_of(instance)
        if node is not None and rekey.needs_rekey(node, inputs):
            moved = await rekeyhost.rekey_host(
                instance,
                inputs,
                node,
                subject=subject,
                client=self.client,
                recorder=self.recorder,
                slots=self.slots,
                trusted=self.sources.trusted_secret(),
                phases=phases,
                phase_key=key,
            )
            if isinstance(moved, controller_mod.Result):
                return moved
            if self.node_up_to_date(moved, inputs):
                phases.set(key, metrics_mod.HostPhase.READY)
                return controller_mod.Result(requeue_after=self.settings.resync_interval)
        if await self.up_to_date(instance, inputs):
            phases.set(key, metrics_mod.HostPhase.READY)
            wait = self.next_probe_in(key)
            if wait > 0:
                return controller_mod.Result(requeue_after=wait)
            drift = await self.look_for_drift(instance, inputs, subject, ref)
            if not drift:
                return controller_mod.Result(requeue_after=self.settings.resync_interval)
            log.info("%s: drift found (%s); repairing", subject, probe.describe(drift))
        phases.set(key, metrics_mod.HostPhase.CONFIGURING)
        if node is None:
            self.joining.add(key)
        try:
            outcome = await self.configure_gated(instance, inputs, subject)
        except instance_mod.ConfigurationError as exc:
            self.probed.pop(key, None)  # the retry looks again
            phases.set(key, metrics_mod.HostPhase.FAILED)
            log.warning("%s: %s", subject, exc)
            if ref is not None:
                reason = (
                    names.EventReason.HOST_KEY_MISMATCH
                    if isinstance(exc, instance_mod.HostKeyChangedError)
                    else failure_reason
                )
                await self.recorder.emit_event(ref, "Warning", reason, str(exc))
            return controller_mod.Result(requeue=True)
        except Exception:
            phases.set(key, metrics_mod.HostPhase.FAILED)
            raise
        phases.set(key, metrics_mod.HostPhase.READY)
        if isinstance(outcome, rollout.Held):  # waits for its turn, or was only rebooted
            return controller_mod.Result(requeue_after=outcome.requeue_after)
        self.joining.discard(key)
        self.probed[key] = time.monotonic()
        await hostreport.configured(
            self.recorder,
            outcome,
            subject=subject,
            ref=ref,
            setup_reason=setup_reason,
            drift=drift,
        )
        return controller_mod.Result(requeue_after=self.settings.resync_interval)

    def next_probe_in(self, key: str) -> float:
        """Seconds until the host's next drift probe is due (0: now)."""
        last = self.probed.get(key)
        if last is None:
            return 0.0
        return max(0.0, last + self.settings.resync_interval - time.monotonic())

    async def look_for_drift(
        self,
        instance: instance_mod.Instance,
        inputs: instance_mod.Inputs,
        subject: str,
        ref: kube.ObjectRef | None,
    ) -> tuple[probe.Finding, ...]:
        """Probe an up-to-date host once; what differs (nothing when the probe itself failed).

        A probe that fails (host unreachable, odd answer) is logged and tried again at the next
        interval; a changed host key is also reported as ``HostKeyMismatch``.
        """
        key = phase_key(instance)
        self.probed[key] = time.monotonic()
        node = self.node_of(instance)
        if node is None:
            return ()
        try:
            async with self.slots:
                return await probe.probe(self.client, instance, inputs, node)
        except instance_mod.ConfigurationError as exc:
            log.warning("%s: drift probe failed: %s", subject, exc)
            if ref is not None and isinstance(exc, instance_mod.HostKeyChangedError):
                await self.recorder.emit_event(
                    ref, "Warning", names.EventReason.HOST_KEY_MISMATCH, str(exc)
                )
            return ()

    async def deconfigure_instance(
        self,
        instance: instance_mod.Instance,
        inputs: instance_mod.Inputs,
        *,
        clean_host: bool = True,
    ) -> deconfigure.Teardown:
        """Deconfigure one instance and delete its node, waiting for a free slot first.

        The host stops counting in ``wmco_hosts`` as soon as its teardown starts: cleaning a VM
        its cloud is destroying can take the whole SSH boot deadline, and a host on its way out
        is not a ready one.
        """
        self.forget_host(phase_key(instance))
        async with self.slots:
            with node_mod.using_nodes(self.nodes):
                return await deconfigure.deconfigure(
                    self.client, instance, inputs, delete_node=True, clean_host=clean_host
                )


MIN_HOST_WORKERS = 1000
"""Reconciles of hosts running at once, at least: a host that only waits (for SSH to answer, the
Containers feature, a reboot, Ready) keeps its reconcile but no slot (``nodeconfig/slots.py``),
so the controllers need a worker for every host that may be joining at once, or the waiting ones
queue the rest. At 500 hosts joining together 200 workers did: 300 hosts waited in the queue
and all were Ready after 586 s, a join being 161 s alone (``benchmarks/RESULTS.md``). A worker
is one idle coroutine (a few KiB); the slots, not the workers, bound the work."""


def worker_count(settings: Settings) -> int:
    """Workers of each host controller: room for waiting hosts beside the working ones."""
    return max(MIN_HOST_WORKERS, 4 * settings.concurrency)


def phase_key(instance: instance_mod.Instance) -> str:
    """How a host is counted in ``wmco_hosts``: its Machine, else its address."""
    return instance.machine or instance.address


def instance_of_node(
    node: Node, origin: instance_mod.Origin, default_username: str
) -> instance_mod.Instance | None:
    """Rebuild the :class:`Instance` a configured node came from (for teardown)."""
    annotations = (node.metadata.annotations if node.metadata else None) or {}
    address = annotations.get(names.INSTANCE_ADDRESS_ANNOTATION)
    if not address:
        return None
    return instance_mod.Instance(
        address=address,
        username=annotations.get(names.USERNAME_ANNOTATION) or default_username,
        origin=origin,
        machine=annotations.get(names.MACHINE_ANNOTATION),
    )


ca_changed = hostinputs.ca_changed
"""Predicate of the CA watches (see :func:`wmco.controllers.hostinputs.ca_changed`)."""


def setup(
    manager: manager_mod.Manager,
    settings: Settings,
    recorder: kube.EventRecorder,
    payload: payload_manifest.Manifest,
    version: str,
) -> Hosts:
    """The shared host state, on the manager's shared node and private-key informers."""
    namespace = settings.namespace
    return Hosts(
        client=manager.client,
        settings=settings,
        recorder=recorder,
        payload=payload,
        version=version,
        nodes=manager.informer(Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS}),
        private_keys=hostinputs.named(manager, Secret, names.PRIVATE_KEY_SECRET, namespace),
        ca_sources=hostinputs.ca_informers(manager, settings),
        exporter_secrets=hostinputs.exporter_ca_informer(manager, settings),
        metrics=manager.metrics,
        trusted_keys=hostinputs.named(manager, Secret, names.TRUSTED_PRIVATE_KEY_SECRET, namespace),
    )
