"""Command line and KubeletConfiguration of the simulated kubelet (pure, no I/O but file reads).

A real ``kubelet.exe`` is configured by pflag-style flags plus a ``--config`` file holding a
``kubelet.config.k8s.io/v1beta1`` ``KubeletConfiguration`` (JSON, as WMCO writes it, or YAML).
This module turns an argv and the files it names into one immutable :class:`KubeletOptions`
record, failing with the kubelet's own wording where the real binary refuses to start
(unknown ``kubernetes.io`` labels in ``--node-labels``, a config file that is missing or of the
wrong kind, a non-Windows CRI endpoint...). Everything that a real kubelet only notices later
(rejected credentials, a node IP that is not on the host) is left to the running process.

Flags are parsed the pflag way: ``--flag=value`` and ``--flag value``; boolean flags take no
separate value. Flags that the simulation does not model are accepted and ignored, so that a
WMCO-built service command line (``--windows-priorityclass``, ``--image-credential-provider-*``,
``--cloud-config``...) starts as it would on a real host. When the service binary is
``kube-log-runner.exe``, the arguments after ``kubelet.exe`` are the kubelet's.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "KUBELET_CONFIG_API_VERSIONS",
    "KubeletOptions",
    "OptionsError",
    "Taint",
    "parse_duration",
    "parse_flags",
    "parse_node_labels",
    "parse_taints",
    "resolve_options",
    "validate_node_labels",
    "win_dirname",
    "win_join",
]

KUBELET_CONFIG_API_VERSIONS = ("kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1")

# Flags whose value is a boolean: ``--windows-service`` alone means true.
_BOOL_FLAGS = frozenset(
    {
        "windows-service",
        "rotate-certificates",
        "rotate-server-certificates",
        "register-node",
        "register-schedulable",
        "enable-debugging-handlers",
        "cgroups-per-qos",
        "fail-swap-on",
        "enable-server",
        "logtostderr",
        "alsologtostderr",
        "exit-on-lock-contention",
        "help",
        "version",
    }
)

# Flags the simulation reads, which need a value.
_VALUE_FLAGS = frozenset(
    {
        "config",
        "kubeconfig",
        "bootstrap-kubeconfig",
        "cert-dir",
        "root-dir",
        "hostname-override",
        "node-ip",
        "node-labels",
        "register-with-taints",
        "provider-id",
        "cloud-provider",
        "container-runtime-endpoint",
        "max-pods",
        "v",
    }
)

_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

# staging/src/k8s.io/kubelet/pkg/apis/well_known_labels.go (upstream, without OpenShift's carry).
_KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
    }
)
_KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")

_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class OptionsError(Exception):
    """The command line or a configuration file is wrong; the message is the kubelet's."""


@dataclass(frozen=True, slots=True)
class Taint:
    """A node taint as the kubelet registers it."""

    key: str
    value: str
    effect: str

    def to_dict(self) -> dict[str, str]:
        """Return the API representation (``value`` omitted when empty)."""
        out = {"key": self.key, "effect": self.effect}
        if self.value:
            out["value"] = self.value
        return out


@dataclass(frozen=True, slots=True)
class KubeletOptions:
    """Everything the simulated kubelet takes from its command line and config file.

    Attributes:
        node_name: The node name (lower-cased, trimmed override or host name).
        hostname_overridden: Whether ``--hostname-override`` was given.
        node_ip: ``--node-ip`` (first address), or ``None`` to use the host's address.
        kubeconfig: ``--kubeconfig`` path, or ``None`` (standalone mode).
        bootstrap_kubeconfig: ``--bootstrap-kubeconfig`` path, or ``None``.
        cert_dir: ``--cert-dir`` without a trailing separator.
        node_labels: ``--node-labels``, validated.
        taints: Taints to register with (flag overrides config).
        provider_id: ``spec.providerID`` to register with, or ``""``.
        cloud_provider: ``--cloud-provider`` (``""`` or ``"external"``).
        verbosity: ``--v``.
        windows_service: ``--windows-service``.
        rotate_certificates: ``rotateCertificates``.
        server_tls_bootstrap: ``serverTLSBootstrap``.
        register_node: ``registerNode``.
        register_schedulable: ``registerSchedulable``.
        status_update_frequency: ``nodeStatusUpdateFrequency`` in seconds.
        status_report_frequency: ``nodeStatusReportFrequency`` in seconds.
        lease_duration_seconds: ``nodeLeaseDurationSeconds``.
        max_pods: ``maxPods``.
        port: ``port`` (the kubelet endpoint).
        container_runtime_endpoint: ``containerRuntimeEndpoint``.
        system_reserved: ``systemReserved``.
        kube_reserved: ``kubeReserved``.
        eviction_hard: ``evictionHard``.
        config: The raw KubeletConfiguration mapping (empty without ``--config``).
        warnings: Messages a real kubelet logs at start-up for this configuration.
    """

    node_name: str
    hostname_overridden: bool
    node_ip: str | None
    kubeconfig: str | None
    bootstrap_kubeconfig: str | None
    cert_dir: str
    node_labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    provider_id: str
    cloud_provider: str
    verbosity: int
    windows_service: bool
    rotate_certificates: bool
    server_tls_bootstrap: bool
    register_node: bool
    register_schedulable: bool
    status_update_frequency: float
    status_report_frequency: float
    lease_duration_seconds: int
    max_pods: int
    port: int
    container_runtime_endpoint: str
    system_reserved: Mapping[str, str]
    kube_reserved: Mapping[str, str]
    eviction_hard: Mapping[str, str]
    config: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def win_join(directory: str, name: str) -> str:
    r"""Join a Windows directory and a file name (``c:\var\lib\kubelet\pki\`` + ``a.pem``)."""
    return directory.rstrip("\\/") + "\\" + name


def win_dirname(path: str) -> str:
    r"""Return the directory part of a Windows path (``C:\k\kubeconfig`` → ``C:\k``)."""
    cut = max(path.rfind("\\"), path.rfind("/"))
    return path[:cut] if cut > 0 else path


def is_win_absolute(path: str) -> bool:
    r"""Whether a path is absolute on Windows (``C:\...``, ``C:/...`` or ``\\server\...``)."""
    return bool(re.match(r"^[A-Za-z]:[\\/]", path)) or path.startswith(("\\\\", "//"))


def parse_flags(argv: list[str]) -> dict[str, str]:
    r"""Parse kubelet flags the pflag way.

    Args:
        argv: The argument vector. It may start with the program (``C:\\k\\kubelet.exe``) or
            with ``kube-log-runner.exe`` and its own flags before the kubelet program.

    Returns:
        Flag name (without dashes) to value; boolean flags given alone map to ``"true"``.
        A repeated flag keeps its last value, as pflag does for scalar flags.

    Raises:
        OptionsError: On a positional argument where a flag was expected.
    """
    args = list(argv)
    for i, arg in enumerate(args):
        base = arg.replace("/", "\\").rsplit("\\", 1)[-1].lower()
        if not arg.startswith("-") and base in ("kubelet.exe", "kubelet"):
            args = args[i + 1 :]
            break
    else:
        if args and not args[0].startswith("-"):
            args = args[1:]
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            raise OptionsError(f'unknown command "{arg}" for "kubelet"')
        name, eq, value = arg.lstrip("-").partition("=")
        if not eq:
            if name in _BOOL_FLAGS:
                value = "true"
            elif i < len(args) and not args[i].startswith("-"):
                value = args[i]
                i += 1
            elif name in _VALUE_FLAGS:
                raise OptionsError(f"flag needs an argument: --{name}")
            else:
                value = "true"
        flags[name] = value
    return flags


def parse_bool(name: str, value: str) -> bool:
    """Parse a Go ``strconv.ParseBool`` value.

    Raises:
        OptionsError: On anything else.
    """
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise OptionsError(
        f'invalid argument "{value}" for "--{name}" flag: strconv.ParseBool: parsing '
        f'"{value}": invalid syntax'
    )


def parse_duration(value: str | float | int) -> float:
    """Parse a Go ``time.Duration`` string (``"10s"``, ``"5m0s"``, ``"1h30m"``) into seconds.

    Raises:
        OptionsError: On a malformed duration.
    """
    if isinstance(value, int | float):
        return float(value) / 1e9  # a bare number in JSON is nanoseconds
    text = value.strip()
    if text in ("0", ""):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body) or pos == 0:
        raise OptionsError(f'time: invalid duration "{value}"')
    return sign * total


def parse_node_labels(value: str) -> dict[str, str]:
    """Parse ``--node-labels`` (``k=v,k2=v2``; a bare key means an empty value)."""
    labels: dict[str, str] = {}
    for pair in value.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, val = pair.partition("=")
        labels[key.strip()] = val.strip()
    return labels


def _is_kubernetes_label(key: str) -> bool:
    prefix = key.split("/", 1)[0] if "/" in key else ""
    return prefix in ("kubernetes.io", "k8s.io") or prefix.endswith((".kubernetes.io", ".k8s.io"))


def is_kubelet_label(key: str) -> bool:
    """Whether NodeRestriction lets a node identity set this label (``IsKubeletLabel``)."""
    if key in _KUBELET_LABELS:
        return True
    prefix = key.split("/", 1)[0] if "/" in key else ""
    return any(prefix == ns or prefix.endswith("." + ns) for ns in _KUBELET_LABEL_NAMESPACES)


def _label_syntax_errors(key: str, value: str) -> list[str]:
    errors: list[str] = []
    prefix, _, name = key.rpartition("/")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        errors.append(f"{key!r}: invalid label key")
    elif prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        errors.append(f"{key!r}: invalid label key prefix")
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        errors.append(f"{key}={value!r}: invalid label value")
    return errors


def validate_node_labels(labels: Mapping[str, str]) -> None:
    """Refuse ``--node-labels`` exactly as ``ValidateKubeletFlags`` does.

    Raises:
        OptionsError: On forbidden ``kubernetes.io``/``k8s.io`` keys or invalid label syntax.
    """
    unknown = sorted(k for k in labels if _is_kubernetes_label(k) and not is_kubelet_label(k))
    if unknown:
        allowed = ", ".join(sorted(_KUBELET_LABELS))
        raise OptionsError(
            f"unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: "
            f"[{' '.join(unknown)}]\n--node-labels in the 'kubernetes.io' namespace must begin "
            f"with an allowed prefix (kubelet.kubernetes.io, node.kubernetes.io) or be in the "
            f"specifically allowed set ({allowed})"
        )
    errors = [e for k, v in labels.items() for e in _label_syntax_errors(k, v)]
    if errors:
        raise OptionsError(f"invalid node labels: {'; '.join(errors)}")


def parse_taints(value: str) -> tuple[Taint, ...]:
    """Parse ``--register-with-taints`` (``key=value:Effect,key:Effect``).

    Raises:
        OptionsError: On a malformed taint or an unknown effect.
    """
    taints: list[Taint] = []
    for spec in value.split(","):
        spec = spec.strip()
        if not spec:
            continue
        key_value, colon, effect = spec.rpartition(":")
        if not colon:
            raise OptionsError(f'invalid taint spec: "{spec}"')
        key, _, val = key_value.partition("=")
        taints.append(_checked_taint(key, val, effect))
    return tuple(taints)


def _checked_taint(key: str, value: str, effect: str) -> Taint:
    if effect not in _TAINT_EFFECTS:
        raise OptionsError(f'invalid taint effect: {effect}, unsupported taint effect "{effect}"')
    if not key or _label_syntax_errors(key, value):
        raise OptionsError(f'invalid taint spec: "{key}={value}:{effect}"')
    return Taint(key=key, value=value, effect=effect)


def load_kubelet_config(path: str, data: bytes | None) -> dict[str, Any]:
    """Decode a KubeletConfiguration file (JSON or YAML).

    Raises:
        OptionsError: With the kubelet's wording when the file is missing or not a
            KubeletConfiguration.
    """
    prefix = f"failed to load kubelet config file, path: {path}, error: "
    if data is None:
        raise OptionsError(
            f'{prefix}failed to read kubelet config file "{path}", error: open {path}: '
            "The system cannot find the file specified."
        )
    try:
        text = data.decode("utf-8-sig")
        try:
            doc = json.loads(text)
        except ValueError:
            doc = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise OptionsError(f"{prefix}failed to decode: {err}") from err
    if not isinstance(doc, dict):
        raise OptionsError(f"{prefix}failed to decode: Object 'Kind' is missing in '{text[:80]}'")
    kind = doc.get("kind")
    api_version = doc.get("apiVersion")
    if not kind:
        raise OptionsError(f"{prefix}failed to decode: Object 'Kind' is missing")
    if api_version not in KUBELET_CONFIG_API_VERSIONS or kind != "KubeletConfiguration":
        raise OptionsError(
            f'{prefix}failed to decode: no kind "{kind}" is registered for version '
            f'"{api_version}" in scheme "pkg/kubelet/apis/config/scheme/scheme.go:28"'
        )
    return doc


def _quantities(raw: Any, what: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise OptionsError(f"invalid configuration: {what} must be a map")
    return {str(k): str(v) for k, v in raw.items()}


def _config_taints(raw: Any) -> tuple[Taint, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise OptionsError("invalid configuration: registerWithTaints must be a list")
    out: list[Taint] = []
    for item in raw:
        if not isinstance(item, dict):
            raise OptionsError("invalid configuration: registerWithTaints entries must be maps")
        out.append(
            _checked_taint(
                str(item.get("key", "")),
                str(item.get("value", "") or ""),
                str(item.get("effect", "")),
            )
        )
    return tuple(out)


def resolve_options(
    argv: list[str],
    *,
    hostname: str,
    read_file: Callable[[str], bytes | None],
) -> KubeletOptions:
    """Turn a kubelet argv (and the config file it names) into :class:`KubeletOptions`.

    Args:
        argv: The kubelet's argument vector.
        hostname: The host's name (``os.Hostname()``).
        read_file: Reads a file of the host's disk by Windows path (``None`` if missing).

    Returns:
        The resolved options.

    Raises:
        OptionsError: Where a real kubelet refuses to start, with its message.
    """
    flags = parse_flags(argv)
    warnings: list[str] = []
    config: dict[str, Any] = {}
    if flags.get("config"):
        config = load_kubelet_config(flags["config"], read_file(flags["config"]))

    override = flags.get("hostname-override", "")
    node_name = (override.strip() or hostname.strip()).lower()
    if not node_name:
        raise OptionsError("failed to run Kubelet: empty hostname is invalid")

    node_ip: str | None = None
    if flags.get("node-ip"):
        first = flags["node-ip"].split(",")[0].strip()
        try:
            node_ip = str(ipaddress.ip_address(first))
        except ValueError as err:
            raise OptionsError(
                f'failed to run Kubelet: bad --node-ip "{flags["node-ip"]}"'
            ) from err

    labels = parse_node_labels(flags.get("node-labels", ""))
    validate_node_labels(labels)

    taints = _config_taints(config.get("registerWithTaints"))
    if "register-with-taints" in flags:
        taints = parse_taints(flags["register-with-taints"])

    def config_bool(key: str, flag: str, default: bool) -> bool:
        if flag in flags:
            return parse_bool(flag, flags[flag])
        value = config.get(key, default)
        if not isinstance(value, bool):
            raise OptionsError(f"invalid configuration: {key} must be a boolean")
        return value

    def config_int(key: str, flag: str, default: int) -> int:
        raw = flags.get(flag, config.get(key, default))
        try:
            return int(raw)
        except (TypeError, ValueError) as err:
            raise OptionsError(f"invalid configuration: {key} must be an integer") from err

    update_raw = config.get("nodeStatusUpdateFrequency")
    status_update = parse_duration(update_raw) if update_raw is not None else 10.0
    report_raw = config.get("nodeStatusReportFrequency")
    if report_raw is not None:
        status_report = parse_duration(report_raw)
    else:
        # An explicit update frequency also becomes the report frequency (defaults.go).
        status_report = status_update if update_raw is not None else 300.0
    lease_duration = config_int("nodeLeaseDurationSeconds", "node-lease-duration-seconds", 40)
    if lease_duration <= 0:
        raise OptionsError("invalid configuration: nodeLeaseDurationSeconds must be greater than 0")
    if status_update <= 0:
        raise OptionsError(
            "invalid configuration: nodeStatusUpdateFrequency must be greater than 0"
        )

    endpoint = str(
        flags.get(
            "container-runtime-endpoint",
            config.get("containerRuntimeEndpoint") or "unix:///run/containerd/containerd.sock",
        )
    )
    if not endpoint.startswith("npipe:"):
        raise OptionsError(
            "failed to run Kubelet: validate service connection: validate CRI v1 runtime API for "
            f'endpoint "{endpoint}": rpc error: code = Unavailable desc = connection error: '
            'desc = "transport: Error while dialing: dial unix: connect: No connection could be '
            'made because the target machine actively refused it."'
        )
    if "containerd-containerd" not in endpoint:
        warnings.append(f'container runtime endpoint "{endpoint}" is not containerd\'s named pipe')

    if config.get("cgroupsPerQOS", True) is True:
        warnings.append(
            "ignored configuration option: CgroupsPerQOS (--cgroups-per-qos) true is not "
            "supported on Windows"
        )
    enforce = config.get("enforceNodeAllocatable", ["pods"])
    if enforce:
        warnings.append(
            "ignored configuration option: EnforceNodeAllocatable (--enforce-node-allocatable) "
            f"{enforce} is not supported on Windows"
        )
    for removed in ("log-dir", "log-file", "logtostderr", "alsologtostderr"):
        if removed in flags:
            warnings.append(f"flag --{removed} has been removed in 1.26 and is ignored")

    verbosity_raw = flags.get("v", "0")
    try:
        verbosity = int(verbosity_raw)
    except ValueError as err:
        raise OptionsError(
            f'invalid argument "{verbosity_raw}" for "-v, --v" flag: strconv.ParseInt: parsing '
            f'"{verbosity_raw}": invalid syntax'
        ) from err

    cert_dir = flags.get("cert-dir") or win_join(
        flags.get("root-dir", "C:\\var\\lib\\kubelet"), "pki"
    )
    return KubeletOptions(
        node_name=node_name,
        hostname_overridden=bool(override.strip()),
        node_ip=node_ip,
        kubeconfig=flags.get("kubeconfig") or None,
        bootstrap_kubeconfig=flags.get("bootstrap-kubeconfig") or None,
        cert_dir=cert_dir.rstrip("\\/"),
        node_labels=labels,
        taints=taints,
        provider_id=str(flags.get("provider-id", config.get("providerID", "")) or ""),
        cloud_provider=flags.get("cloud-provider", ""),
        verbosity=verbosity,
        windows_service=parse_bool("windows-service", flags.get("windows-service", "false")),
        rotate_certificates=config_bool("rotateCertificates", "rotate-certificates", False),
        server_tls_bootstrap=config_bool("serverTLSBootstrap", "rotate-server-certificates", False),
        register_node=config_bool("registerNode", "register-node", True),
        register_schedulable=config_bool("registerSchedulable", "register-schedulable", True),
        status_update_frequency=status_update,
        status_report_frequency=status_report,
        lease_duration_seconds=lease_duration,
        max_pods=config_int("maxPods", "max-pods", 110),
        port=config_int("port", "port", 10250),
        container_runtime_endpoint=endpoint,
        system_reserved=_quantities(config.get("systemReserved"), "systemReserved"),
        kube_reserved=_quantities(config.get("kubeReserved"), "kubeReserved"),
        eviction_hard=_quantities(
            config.get(
                "evictionHard",
                {
                    "memory.available": "100Mi",
                    "nodefs.available": "10%",
                    "imagefs.available": "15%",
                },
            ),
            "evictionHard",
        ),
        config=config,
        warnings=tuple(warnings),
    )
