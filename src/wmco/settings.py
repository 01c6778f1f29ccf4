"""Every tunable of the operator in one frozen record, read once at start-up.

``Settings.from_env()`` reads ``WMCO_*`` environment variables (and ``WATCH_NAMESPACE``, the
reference operator's variable for its namespace); the CLI builds a ``Settings`` from its flags with
``dataclasses.replace``. Everything below ``cli`` receives the record; nothing else reads the
environment.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

from wmco import names

ENV_PREFIX = "WMCO_"

MIN_BOOTSTRAP_TOKEN_TTL: Final = 600.0
"""The shortest ``expirationSeconds`` the TokenRequest API accepts."""

_T = TypeVar("_T")


class SettingsError(ValueError):
    """A setting has a value the operator cannot use; the message names the variable."""


class LogFormat(enum.StrEnum):
    """How the operator writes its log lines."""

    TEXT = "text"
    JSON = "json"


class NetworkProfile(enum.StrEnum):
    """How pods on Windows nodes get their network (shared/reference/windows-networking.md).

    ``ovn-hybrid``: OpenShift's OVN-Kubernetes hybrid overlay; the operator runs
    hybrid-overlay-node, writes the win-overlay CNI configuration, makes the VIP endpoint and runs
    kube-proxy (winkernel). ``hostprocess``: plain Kubernetes whose CNI and kube-proxy run as
    HostProcess DaemonSets (Calico, Antrea, Flannel); the operator provides containerd and the
    kubelet only, with the CNI directories those DaemonSets write to. ``auto`` is resolved once at
    start-up from the cluster (``wmco.cluster.network``); nothing below the operator's start-up
    ever sees it.
    """

    AUTO = "auto"
    OVN_HYBRID = "ovn-hybrid"
    HOSTPROCESS = "hostprocess"


class HyperVMode(enum.StrEnum):
    """Whether Windows nodes offer Hyper-V isolated containers (setting ``hyperv``).

    ``off``: process isolation only. ``on``: hosts whose Hyper-V role is installed get the Hyper-V
    runtimes and the ``hyperv`` label; the others get an Event and stay process-isolation nodes.
    ``install``: as ``on``, and the operator installs the role (with the reboot it needs) where it
    is missing; a host that cannot run it (no nested virtualisation) gets an Event instead.
    """

    OFF = "off"
    ON = "on"
    INSTALL = "install"


_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_CONFIGMAP_KEY: Final = re.compile(r"[-._a-zA-Z0-9]{1,253}")


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigMapKey:
    """One key of one ConfigMap: ``<namespace>/<name>:<key>``.

    Attributes:
        namespace: The ConfigMap's namespace.
        name: The ConfigMap's name.
        key: The data key.
    """

    namespace: str
    name: str
    key: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.key}"

    @classmethod
    def parse(cls, text: str) -> ConfigMapKey:
        """Read ``<namespace>/<name>:<key>``.

        Raises:
            ValueError: Another shape, or a part Kubernetes would not accept as such a name.
        """
        location, sep, key = text.strip().rpartition(":")
        namespace, slash, name = location.partition("/")
        if not sep or not slash:
            raise ValueError("expected <namespace>/<name>:<key>")
        if not _DNS_LABEL.fullmatch(namespace):
            raise ValueError("the namespace is not a DNS label")
        if not _DNS_SUBDOMAIN.fullmatch(name):
            raise ValueError("the name is not a DNS subdomain")
        if not _CONFIGMAP_KEY.fullmatch(key) or key in (".", ".."):
            raise ValueError("the key is not a ConfigMap key")
        return cls(namespace, name, key)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """All operator tunables. Defaults match the reference operator where one exists.

    Attributes:
        namespace: Namespace the operator runs in and watches (Secrets, ConfigMaps, Leases).
        machine_api_namespace: Namespace of Machines and of the user-data Secret.
        ssh_port: TCP port of sshd on Windows hosts.
        ssh_connect_timeout: Seconds allowed for one TCP connect + SSH handshake attempt.
        ssh_command_timeout: Default seconds allowed for one remote command.
        ssh_boot_deadline: Seconds to keep retrying a host that does not answer yet (booting).
        ssh_auth_grace: Seconds to keep retrying authentication failures (user data still running).
        ssh_retry_interval: Seconds between connection attempts.
        ssh_channels_per_host: Concurrent SSH channels (commands, SFTP) per host.
        concurrency: Hosts worked on at once (looks, scripts, waits for a place); a host that only
            waits or is uploading holds no place (``nodeconfig/slots.py``).
        upload_memory_mib: MiB the uploads to all hosts may hold in flight at once; each upload
            holds its window of SFTP writes (4 MiB), so 40 MiB lets ten full uploads run.
        max_unavailable: Managed Windows nodes that may be unavailable at once during a roll-out
            (an upgrade or a reboot the operator needs): a number (``1``) or a percentage of the
            managed Windows nodes (``"25%"``, rounded down, at least 1); see
            :meth:`max_unavailable_of`.
        api_server_url: API server URL written into the kubelet's bootstrap kubeconfig; ``None``
            means discover it (``kube-public/cluster-info`` or the OpenShift infrastructure).
        log_format: Log line format.
        log_level: Python logging level name.
        payload_dir: Folder with ``manifest.json`` and the files to copy to hosts.
        cluster_dns: Cluster DNS service IP; ``None`` means the 10th address of ``service_cidr``.
        cluster_domain: Cluster DNS domain.
        service_cidr: Service network (first one).
        network_profile: How pods get their network (``auto`` until resolved at start-up).
        network_timeout: Seconds to wait for the node's hybrid-overlay subnet annotation, and
            again for its overlay HNS network (``ovn-hybrid``).
        kubelet_ca_configmap: ConfigMap key whose PEM bundle becomes the kubelet's client CA,
            instead of the cluster's own source (OpenShift's kubelet-client signer bundle, else
            ``kube-system/extension-apiserver-authentication``).
        pause_image: Sandbox (pause) image for containerd, instead of the one chosen for the
            host's Windows build.
        debug: Verbose logging on hosts (kubelet ``--v=4``) and in the operator.
        metrics_bind_address: An extra ``host:port`` serving /metrics (and the probes); empty
            means /metrics is served on ``probe_bind_address`` only.
        probe_bind_address: ``host:port`` of the operator's /healthz and /readyz.
        leader_election: Whether to take the leader Lease before reconciling.
        bootstrap_namespace: Namespace of the per-host bootstrap ServiceAccounts (its group is
            bound to ``system:node-bootstrapper`` by ``deploy/``).
        bootstrap_token_ttl: Seconds a per-host bootstrap token stays valid (the TokenRequest
            API's minimum is 600); the account, and so the token, is deleted after the join.
        default_username: SSH user for Machine-backed hosts.
        node_ready_timeout: Seconds to wait for a configured instance's Node to become Ready.
        drain_timeout: Seconds a drain may take before deconfiguration gives up (and retries).
        retry_max: Cap of the retry delay after a failed host, in seconds.
        hyperv: Hyper-V isolation on Windows nodes (:class:`HyperVMode`).
        resync_interval: Seconds between two drift probes of a configured, up-to-date host
            (one read-only SSH exec each; :mod:`wmco.nodeconfig.probe`).
    """

    namespace: str = names.OPERATOR_NAMESPACE
    machine_api_namespace: str = names.MACHINE_API_NAMESPACE
    ssh_port: int = 22
    ssh_connect_timeout: float = 30.0
    ssh_command_timeout: float = 300.0
    ssh_boot_deadline: float = 600.0
    ssh_auth_grace: float = 300.0
    ssh_retry_interval: float = 5.0
    ssh_channels_per_host: int = 4
    concurrency: int = 50
    """50, not 10, since uploads have their own bound (``upload_memory_mib``): at 100 hosts the
    measured time to all Ready fell from 597 s to 378 s and peak RSS stayed at 182 MB
    (``benchmarks/RESULTS.md``)."""
    upload_memory_mib: int = 40
    max_unavailable: int | str = 1
    api_server_url: str | None = None
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "INFO"
    payload_dir: pathlib.Path = pathlib.Path("/payload")
    cluster_dns: str | None = None
    cluster_domain: str = "cluster.local"
    service_cidr: str = "172.30.0.0/16"
    network_profile: NetworkProfile = NetworkProfile.AUTO
    network_timeout: float = 600.0
    kubelet_ca_configmap: ConfigMapKey | None = None
    pause_image: str | None = None
    debug: bool = False
    metrics_bind_address: str = ""
    probe_bind_address: str = "0.0.0.0:8081"
    leader_election: bool = True
    bootstrap_namespace: str = names.BOOTSTRAP_NAMESPACE
    bootstrap_token_ttl: float = 3600.0
    default_username: str = "Administrator"
    node_ready_timeout: float = 600.0
    drain_timeout: float = 300.0
    retry_max: float = 300.0
    hyperv: HyperVMode = HyperVMode.OFF
    resync_interval: float = 600.0

    def __post_init__(self) -> None:
        """Check cross-field rules once, so every consumer can trust the record."""
        if not 0 < self.ssh_port < 65536:
            raise SettingsError(f"ssh_port must be 1..65535, got {self.ssh_port}")
        _max_unavailable_parts(self.max_unavailable)
        for name in ("concurrency", "upload_memory_mib", "ssh_channels_per_host"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in (
            "ssh_connect_timeout",
            "ssh_command_timeout",
            "ssh_boot_deadline",
            "ssh_auth_grace",
            "ssh_retry_interval",
            "bootstrap_token_ttl",
            "node_ready_timeout",
            "drain_timeout",
            "retry_max",
            "network_timeout",
            "resync_interval",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive, got {getattr(self, name)}")
        if not _DNS_LABEL.fullmatch(self.bootstrap_namespace):
            raise SettingsError(
                f"bootstrap_namespace {self.bootstrap_namespace!r} is not a namespace name"
            )
        if self.bootstrap_token_ttl < MIN_BOOTSTRAP_TOKEN_TTL:
            raise SettingsError(
                f"bootstrap_token_ttl must be at least {MIN_BOOTSTRAP_TOKEN_TTL:.0f} (the "
                f"TokenRequest API's minimum), got {self.bootstrap_token_ttl}"
            )
        try:
            network = ipaddress.ip_network(self.service_cidr, strict=False)
        except ValueError:
            raise SettingsError(
                f"service_cidr {self.service_cidr!r} is not a network (e.g. 172.30.0.0/16)"
            ) from None
        if network.num_addresses < 16:
            raise SettingsError(f"service_cidr {self.service_cidr!r} is too small")
        if self.cluster_dns is not None:
            try:
                ipaddress.ip_address(self.cluster_dns)
            except ValueError:
                raise SettingsError(
                    f"cluster_dns {self.cluster_dns!r} is not an IP address"
                ) from None
        if self.pause_image is not None and (
            not self.pause_image or any(c.isspace() or c in "\"'\\" for c in self.pause_image)
        ):
            raise SettingsError(f"pause_image {self.pause_image!r} is not an image reference")

    def max_unavailable_of(self, total: int) -> int:
        """How many of ``total`` managed Windows nodes may be unavailable at once (at least 1).

        A number is taken as it is; a percentage is of ``total``, rounded down as the
        Deployment controller and the Machine Config Operator round ``maxUnavailable``, but never
        below 1, so a roll-out always moves.
        """
        count, percent = _max_unavailable_parts(self.max_unavailable)
        if percent:
            count = total * count // 100
        return max(1, count)

    @property
    def cluster_dns_address(self) -> str:
        """The cluster DNS IP: the override, else the 10th address of the service CIDR.

        ``172.30.0.0/16`` gives ``172.30.0.10`` (the reference operator's ``cluster.GetDNS``).
        """
        if self.cluster_dns is not None:
            return self.cluster_dns
        network = ipaddress.ip_network(self.service_cidr, strict=False)
        return str(network.network_address + 10)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``WMCO_*`` environment variables; unset ones keep their default.

        The variable for a field is ``WMCO_`` + the upper-case field name (``WMCO_SSH_PORT``).
        ``WATCH_NAMESPACE`` is honoured for ``namespace`` when ``WMCO_NAMESPACE`` is unset.

        Args:
            environ: The environment to read; ``os.environ`` when omitted.

        Returns:
            The settings.

        Raises:
            SettingsError: A variable has a value of the wrong shape (the message names it).
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        watch_namespace = env.get("WATCH_NAMESPACE", "").strip()
        if watch_namespace and "," not in watch_namespace:
            values["namespace"] = watch_namespace
        for field in dataclasses.fields(cls):
            variable = ENV_PREFIX + field.name.upper()
            raw = env.get(variable)
            if raw is None:
                continue
            raw = raw.strip()
            values[field.name] = _convert(variable, field.name, raw)
        return cls(**values)  # type: ignore[arg-type]


def _max_unavailable_parts(value: int | str) -> tuple[int, bool]:
    """``(count, is_percentage)`` of a ``max_unavailable`` value.

    Raises:
        SettingsError: Not a number of at least 1 nor a percentage of 1 to 100.
    """
    if isinstance(value, bool):
        raise SettingsError(f"max_unavailable must be a number or a percentage, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise SettingsError(f"max_unavailable must be at least 1, got {value}")
        return value, False
    text = value.strip()
    if not re.fullmatch(r"[0-9]{1,3}%", text) or not 1 <= int(text[:-1]) <= 100:
        raise SettingsError(
            f"max_unavailable must be a number of at least 1 or a percentage 1%..100%, got {value!r}"
        )
    return int(text[:-1]), True


def _max_unavailable(raw: str) -> int | str:
    text = raw.strip()
    if text.endswith("%"):
        _max_unavailable_parts(text)
        return text
    return int(text)


def _convert(variable: str, field_name: str, raw: str) -> object:
    converter = _CONVERTERS.get(field_name, _string)
    try:
        return converter(raw)
    except (ValueError, KeyError):
        raise SettingsError(f"{variable}={raw!r} is not valid for {field_name}") from None


def _string(raw: str) -> str:
    if not raw:
        raise ValueError("empty")
    return raw


def _optional_string(raw: str) -> str | None:
    return raw or None


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _enum(enum_type: Callable[[str], _T]) -> Callable[[str], _T]:
    def convert(raw: str) -> _T:
        return enum_type(raw.lower())

    return convert


_CONVERTERS: dict[str, Callable[[str], object]] = {
    "ssh_port": int,
    "ssh_connect_timeout": float,
    "ssh_command_timeout": float,
    "ssh_boot_deadline": float,
    "ssh_auth_grace": float,
    "ssh_retry_interval": float,
    "ssh_channels_per_host": int,
    "concurrency": int,
    "upload_memory_mib": int,
    "max_unavailable": _max_unavailable,
    "api_server_url": _optional_string,
    "log_format": _enum(LogFormat),
    "log_level": lambda raw: _string(raw).upper(),
    "payload_dir": lambda raw: pathlib.Path(_string(raw)),
    "cluster_dns": _optional_string,
    "network_profile": _enum(NetworkProfile),
    "network_timeout": float,
    "kubelet_ca_configmap": lambda raw: ConfigMapKey.parse(raw) if raw else None,
    "pause_image": _optional_string,
    "debug": _boolean,
    "leader_election": _boolean,
    "bootstrap_token_ttl": float,
    "node_ready_timeout": float,
    "drain_timeout": float,
    "retry_max": float,
    "hyperv": _enum(HyperVMode),
    "resync_interval": float,
}
