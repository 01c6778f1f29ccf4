"""The records the configure and deconfigure flows share: the instance, its inputs, the steps.

An :class:`Instance` is one Windows host to turn into a node; :class:`Inputs` are the
cluster-wide values of one reconcile (settings with the network profile already resolved, key,
payload, version, the kubelet client CA); :class:`Step` names every step for progress messages
and errors; :class:`ConfigurationError` carries which host, which step and what to do.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Protocol

from wmco import userdata
from wmco.cluster import clientca, exporterca
from wmco.payload import manifest as payload_manifest
from wmco.settings import Settings


class Origin(enum.StrEnum):
    """What brought an instance to the operator."""

    MACHINE = "machine"
    BYOH = "byoh"


class Step(enum.StrEnum):
    """The steps of the configure flow, in order (used in progress reports and errors)."""

    CONNECT = "connect"
    IDENTIFY = "identify"
    CONTAINERS_FEATURE = "containers-feature"
    HYPERV = "hyperv"
    DIRECTORIES = "directories"
    BOOTSTRAP_FILES = "bootstrap-files"
    EXPORTER_TLS = "exporter-tls"
    CHANGES = "changes"
    STOP_SERVICES = "stop-services"
    FILES = "files"
    SERVICES = "services"
    NODE_SUBNET = "node-subnet"
    HNS_NETWORK = "hns-network"
    CNI_CONFIG = "cni-config"
    VIP_ENDPOINT = "vip-endpoint"
    KUBE_PROXY = "kube-proxy"
    NODE_READY = "node-ready"
    NODE_METADATA = "node-metadata"
    DONE = "done"
    # Deconfiguration
    REMOVE_SERVICES = "remove-services"
    REMOVE_NETWORK = "remove-network"
    REMOVE_FILES = "remove-files"
    # Roll-out of an existing node (issue 11): around the configure flow
    DRAIN = "drain"
    REBOOT = "reboot"
    # issue 11 (drift): the periodic read-only look at a configured host
    DRIFT_PROBE = "drift-probe"
    # Key rotation (issue 11)
    REKEY = "rekey"


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


class FlowObserver(Protocol):
    """What the flows tell the operator's metrics (:mod:`wmco.runtime.metrics`); must not raise."""

    def step_finished(self, step: Step, seconds: float) -> None:
        """A configure step took ``seconds`` (also when it failed)."""
        ...

    def ssh_error(self, kind: str) -> None:
        """An SSH error of ``kind`` (:class:`wmco.windows.ssherrors.ErrorKind`) reached a flow."""
        ...


class _NoObserver:
    """A :class:`FlowObserver` that records nothing."""

    def step_finished(self, step: Step, seconds: float) -> None:
        return None

    def ssh_error(self, kind: str) -> None:
        return None


NO_OBSERVER: FlowObserver = _NoObserver()


@dataclasses.dataclass(frozen=True, slots=True)
class Inputs:
    """Cluster-wide inputs of the flow, the same for every instance of one reconcile.

    Build it with :meth:`from_key`, which parses the key once and derives its hash.

    Attributes:
        settings: The operator's settings, ``network_profile`` resolved.
        private_key_pem: The SSH private key (never in ``repr``).
        payload: The files to copy.
        version: The operator's version (the ``version`` annotation).
        pub_key_hash: The ``pub-key-hash`` annotation of the key.
        client_ca: The kubelet client CA bundle, or why there is none right now.
        exporter_ca: The CA of windows_exporter's serving certificates; ``None`` while it
            cannot be had (hosts are then configured with windows_exporter left stopped).
        observer: Where the flows report step durations and SSH errors (metrics).
        previous_private_keys: During a key rotation, the keys hosts may still trust (never in
            ``repr``); :func:`wmco.nodeconfig.runner.connect` offers them after the current one.
    """

    settings: Settings
    private_key_pem: bytes = dataclasses.field(repr=False)
    payload: payload_manifest.Manifest
    version: str
    pub_key_hash: str
    client_ca: clientca.Choice
    exporter_ca: exporterca.CertificateAuthority | None = None
    observer: FlowObserver = dataclasses.field(
        default_factory=lambda: NO_OBSERVER, repr=False, compare=False
    )
    previous_private_keys: tuple[bytes, ...] = dataclasses.field(default=(), repr=False)

    @classmethod
    def from_key(
        cls,
        settings: Settings,
        private_key_pem: bytes,
        payload: payload_manifest.Manifest,
        version: str,
        *,
        client_ca: clientca.Choice,
        exporter_ca: exporterca.CertificateAuthority | None = None,
        observer: FlowObserver | None = None,
        previous_private_keys: tuple[bytes, ...] = (),
    ) -> Inputs:
        """Parse the key once; raise ``userdata.PrivateKeyError`` if it is unusable."""
        key = userdata.load_private_key(private_key_pem)
        return cls(
            settings,
            private_key_pem,
            payload,
            version,
            userdata.pub_key_hash(key),
            client_ca,
            exporter_ca,
            observer or NO_OBSERVER,
            previous_private_keys,
        )

    @property
    def client_ca_hash(self) -> str | None:
        """The digest of the bundle to write, ``None`` while it is unusable."""
        return self.client_ca.sha256 if isinstance(self.client_ca, clientca.ClientCa) else None


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What the configure flow did.

    Attributes:
        node_name: The node's name.
        files_written: Files copied or written because they differed.
        files_unchanged: Files already as wanted.
        services_restarted: Services that were running and were stopped and started again.
        service_actions: sc.exe steps run.
        seconds: Duration.
        hyperv_problem: Why the node offers no Hyper-V isolation although the setting asks for
            it (``None``: it does, or the setting is off).
    """

    node_name: str
    files_written: int
    files_unchanged: int
    services_restarted: tuple[str, ...]
    service_actions: int
    seconds: float
    hyperv_problem: str | None = None


class ConfigurationError(Exception):
    """A step failed; the message says which instance, which step and what to do."""

    def __init__(self, address: str, step: Step, message: str) -> None:
        super().__init__(f"instance {address}: step {step}: {message}")
        self.address = address
        self.step = step


class HostKeyChangedError(ConfigurationError):
    """The instance presented a host key different from the pinned one: refused, not retried."""


Progress = Callable[[Step, str], Awaitable[None]]
"""Called with each step and a short message; must not raise."""


async def no_progress(step: Step, detail: str) -> None:
    """A :data:`Progress` that ignores everything."""
    return None
