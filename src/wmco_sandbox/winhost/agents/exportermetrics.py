"""What the simulated windows_exporter 0.30 serves on ``/metrics``: its collectors' series.

The metric names, HELP texts, types and label names are windows_exporter v0.30.5's
(``internal/collector/<name>/<name>.go``, ``pkg/collector/collection.go``), for the nine
collectors the operator enables: ``cpu``, ``cpu_info``, ``logical_disk``, ``memory``, ``net``,
``os``, ``service``, ``system``, ``container``. The values come from the simulated host where it
has them (its services and their states, its containers and their ids, its disk use, boot time,
build and host name) and are synthesised otherwise, as counters that only grow (CPU time, bytes,
interrupts) or as steady gauges. Each collector emits a subset of its real series (the ones
dashboards and the operator's recording rules use; ``docs/windows-surface.md``).

``windows_container_*`` follow hcsshim's listing: one ``container_id="containerd://<id>"`` per
compute system (each pod's sandbox and each process-isolated container; HostProcess containers
are not compute systems), so they join with kube-state-metrics' ``kube_pod_container_info``. As
the real collector does, it fails (``windows_exporter_collector_success{collector="container"}
0``) when containers run but HNS has no endpoint.

The text is the Prometheus exposition format as client_golang writes it: families sorted by
name, label pairs by name, floats in Go's shortest ``'g'`` form.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

__all__ = [
    "Family",
    "HostView",
    "collect",
    "go_float",
    "render",
]

Labels = Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Family:
    """One metric family: name, HELP, TYPE and its samples."""

    name: str
    help: str
    type: str
    samples: tuple[tuple[Labels, float], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceView:
    """One service as the service collector sees it."""

    name: str
    display_name: str
    state: str
    start_mode: str
    path_name: str
    pid: int
    started_at: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class HostView:
    """The host as the collectors see it at one scrape.

    Attributes:
        now: Unix time of the scrape.
        boot_time: Unix time of the host's boot.
        hostname: DNS host name (lower case).
        address: The host's IPv4 address.
        product: ``Windows Server 2022 Datacenter``.
        build: ``20348``.
        revision: Update build revision (UBR).
        disk_size: Bytes of C:.
        disk_used: Bytes used on C:.
        services: Every installed service.
        containers: ``(container id, started at)`` of every compute system.
        hns_endpoints: How many HNS endpoints exist.
    """

    now: float
    boot_time: float
    hostname: str
    address: str
    product: str
    build: str
    revision: int
    disk_size: int
    disk_used: int
    services: tuple[ServiceView, ...]
    containers: tuple[tuple[str, float], ...]
    hns_endpoints: int


CORES: Final = ("0,0", "0,1")
"""Logical processors as PDH names them (``<group>,<number>``): a 2-vCPU host."""
MEMORY_TOTAL: Final = 8 * 1024**3
NIC: Final = "Microsoft Hyper-V Network Adapter"
_CPU_SHARE: Final = {
    "idle": 0.92,
    "user": 0.05,
    "privileged": 0.025,
    "interrupt": 0.003,
    "dpc": 0.002,
}
_STATES: Final = ("continue pending", "pause pending", "paused", "running", "start pending",
                  "stop pending", "stopped")  # fmt: skip
_START_MODES: Final = ("auto", "boot", "manual", "disabled", "system")
_SCM_START_MODES: Final = {"auto": "auto", "delayed-auto": "auto", "demand": "manual",
                           "disabled": "disabled", "boot": "boot", "system": "system"}  # fmt: skip


def go_float(value: float) -> str:
    """A float as Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` writes it (client_golang's form)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent
    exp10 = point - 1
    prefix = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{prefix}{text}{'0' * (point - len(text))}"
    return f"{prefix}{text[:point]}.{text[point:]}"


def _escape(value: str, *, label: bool) -> str:
    value = value.replace("\\", "\\\\").replace("\n", "\\n")
    return value.replace('"', '\\"') if label else value


def render(families: Iterable[Family]) -> str:
    """The text exposition format, as client_golang's ``expfmt`` writes it."""
    lines: list[str] = []
    for family in sorted(families, key=lambda f: f.name):
        lines.append(f"# HELP {family.name} {_escape(family.help, label=False)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in sorted(family.samples, key=lambda s: sorted(s[0].items())):
            pairs = ",".join(
                f'{key}="{_escape(labels[key], label=True)}"' for key in sorted(labels)
            )
            lines.append(
                f"{family.name}{{{pairs}}} {go_float(value)}"
                if pairs
                else f"{family.name} {go_float(value)}"
            )
    return "".join(f"{line}\n" for line in lines)


def _g(name: str, help_: str, samples: Iterable[tuple[Labels, float]]) -> Family:
    return Family(name, help_, "gauge", tuple(samples))


def _c(name: str, help_: str, samples: Iterable[tuple[Labels, float]]) -> Family:
    return Family(name, help_, "counter", tuple(samples))


def _cpu(host: HostView) -> list[Family]:
    up = max(0.0, host.now - host.boot_time)
    return [
        _g("windows_cpu_logical_processor", "Total number of logical processors", [({}, len(CORES))]),
        _c(
            "windows_cpu_time_total",
            "Time that processor spent in different modes (dpc, idle, interrupt, privileged, user)",
            [({"core": core, "mode": mode}, up * share) for core in CORES for mode, share in _CPU_SHARE.items()],
        ),
        _c("windows_cpu_interrupts_total", "Total number of received and serviced hardware interrupts",
           [({"core": core}, up * 800) for core in CORES]),
        _c("windows_cpu_dpcs_total", "Total number of received and serviced deferred procedure calls (DPCs)",
           [({"core": core}, up * 40) for core in CORES]),
        _c("windows_cpu_clock_interrupts_total", "Total number of received and serviced clock tick interrupts",
           [({"core": core}, up * 64) for core in CORES]),
        _c("windows_cpu_cstate_seconds_total", "Time spent in low-power idle state",
           [({"core": core, "state": state}, up * share)
            for core in CORES for state, share in (("c1", 0.9), ("c2", 0.0), ("c3", 0.0))]),
        _g("windows_cpu_core_frequency_mhz", "Core frequency in megahertz", [({"core": core}, 2445) for core in CORES]),
    ]  # fmt: skip


def _cpu_info(host: HostView) -> list[Family]:
    device = {"device_id": "CPU0"}
    return [
        _g("windows_cpu_info", "Labelled CPU information as provided by Win32_Processor",
           [({"architecture": "9", "description": "AMD64 Family 25 Model 1 Stepping 1",
              "device_id": "CPU0", "family": "107",
              "name": "AMD EPYC 7763 64-Core Processor"}, 1)]),
        _g("windows_cpu_info_core", "Number of cores per CPU", [(device, 1)]),
        _g("windows_cpu_info_enabled_core", "Number of enabled cores per CPU", [(device, 1)]),
        _g("windows_cpu_info_logical_processor", "Number of logical processors per CPU", [(device, len(CORES))]),
        _g("windows_cpu_info_thread", "Number of threads per CPU", [(device, len(CORES))]),
        _g("windows_cpu_info_l2_cache_size", "Size of L2 cache per CPU", [(device, 512)]),
        _g("windows_cpu_info_l3_cache_size", "Size of L3 cache per CPU", [(device, 32768)]),
    ]  # fmt: skip


def _working_sets(host: HostView) -> list[float]:
    return [float(40 * 1024**2 + (int(cid[:4], 16) % 64) * 1024**2) for cid, _ in host.containers]


def _memory(host: HostView) -> list[Family]:
    used = 1.4 * 1024**3 + sum(_working_sets(host))
    free = max(0.0, MEMORY_TOTAL - used)
    up = max(0.0, host.now - host.boot_time)
    return [
        _g("windows_memory_physical_total_bytes", "The amount of actual physical memory, in bytes.", [({}, MEMORY_TOTAL)]),
        _g("windows_memory_physical_free_bytes",
           "The amount of physical memory currently available, in bytes. This is the amount of physical memory that can be "
           "immediately reused without having to write its contents to disk first. It is the sum of the size of the standby, "
           "free, and zero lists.", [({}, free)]),
        _g("windows_memory_available_bytes",
           "The amount of physical memory immediately available for allocation to a process or for system use. It is equal "
           "to the sum of memory assigned to the standby (cached), free and zero page lists (AvailableBytes)", [({}, free)]),
        _g("windows_memory_committed_bytes", "(CommittedBytes)", [({}, used * 1.2)]),
        _g("windows_memory_commit_limit", "(CommitLimit)", [({}, MEMORY_TOTAL * 1.5)]),
        _g("windows_memory_cache_bytes", "(CacheBytes)", [({}, 256 * 1024**2)]),
        _c("windows_memory_page_faults_total",
           "Overall rate at which faulted pages are handled by the processor (Page Faults/sec)", [({}, up * 1500)]),
    ]  # fmt: skip


def _os(host: HostView) -> list[Family]:
    version = f"10.0.{host.build}"
    info = {"build_number": host.build, "major_version": "10", "minor_version": "0",
            "product": host.product, "revision": str(host.revision), "version": version}  # fmt: skip
    return [
        _g("windows_os_info",
           'Contains full product name & version in labels. Note that the "major_version" for Windows 11 is \\"10\\"; '
           "a build number greater than 22000 represents Windows 11.", [(info, 1)]),
        _g("windows_os_hostname",
           "Labelled system hostname information as provided by ComputerSystem.DNSHostName and ComputerSystem.Domain",
           [({"domain": "", "fqdn": host.hostname, "hostname": host.hostname}, 1)]),
        _g("windows_os_visible_memory_bytes", "Deprecated: Use `windows_memory_physical_total_bytes` instead.",
           [({}, MEMORY_TOTAL)]),
        _g("windows_os_processes_limit", "Deprecated: Use `windows_system_process_limit` instead.", [({}, 4294967295)]),
        _g("windows_os_time", "Deprecated: Use windows_time_current_timestamp_seconds instead.", [({}, math.floor(host.now))]),
        _g("windows_os_timezone", "Deprecated: Use windows_time_timezone instead.", [({"timezone": "UTC"}, 1)]),
    ]  # fmt: skip


def _service(host: HostView) -> list[Family]:
    info, state, mode, process = [], [], [], []
    for svc in host.services:
        info.append(({"display_name": svc.display_name, "name": svc.name, "path_name": svc.path_name,
                      "run_as": "LocalSystem"}, 1.0))  # fmt: skip
        state += [({"name": svc.name, "state": s}, float(s == svc.state)) for s in _STATES]
        current = _SCM_START_MODES.get(svc.start_mode, "manual")
        mode += [({"name": svc.name, "start_mode": m}, float(m == current)) for m in _START_MODES]
        if svc.pid and svc.started_at is not None:
            process.append(
                ({"name": svc.name, "process_id": str(svc.pid)}, math.floor(svc.started_at))
            )
    return [
        _g("windows_service_info", "A metric with a constant '1' value labeled with service information", info),
        _g("windows_service_state", "The state of the service (State)", state),
        _g("windows_service_start_mode", "The start mode of the service (StartMode)", mode),
        _g("windows_service_process",
           "Process of started service. The value is the creation time of the process as a unix timestamp.", process),
    ]  # fmt: skip


def _system(host: HostView) -> list[Family]:
    up = max(0.0, host.now - host.boot_time)
    running = sum(1 for s in host.services if s.state == "running")
    return [
        _g("windows_system_boot_time_timestamp_seconds", "Unix timestamp of system boot time", [({}, math.floor(host.boot_time))]),
        _c("windows_system_context_switches_total",
           "Total number of context switches (WMI source: PerfOS_System.ContextSwitchesPersec)", [({}, up * 4200)]),
        _c("windows_system_exception_dispatches_total",
           "Total number of exceptions dispatched (WMI source: PerfOS_System.ExceptionDispatchesPersec)", [({}, up * 2)]),
        _g("windows_system_processes", "Current number of processes (WMI source: PerfOS_System.Processes)",
           [({}, 60 + running + len(host.containers))]),
        _g("windows_system_processor_queue_length",
           "Length of processor queue (WMI source: PerfOS_System.ProcessorQueueLength)", [({}, 0)]),
        _c("windows_system_system_calls_total",
           "Total number of system calls (WMI source: PerfOS_System.SystemCallsPersec)", [({}, up * 21000)]),
        _g("windows_system_threads", "Current number of threads (WMI source: PerfOS_System.Threads)",
           [({}, 900 + 12 * running)]),
    ]  # fmt: skip


def _net(host: HostView) -> list[Family]:
    up = max(0.0, host.now - host.boot_time)
    nic = {"nic": NIC}
    received, sent = up * 52000, up * 31000
    return [
        _c("windows_net_bytes_received_total", "(Network.BytesReceivedPerSec)", [(nic, received)]),
        _c("windows_net_bytes_sent_total", "(Network.BytesSentPerSec)", [(nic, sent)]),
        _c("windows_net_bytes_total", "(Network.BytesTotalPerSec)", [(nic, received + sent)]),
        _c("windows_net_packets_received_total", "(Network.PacketsReceivedPerSec)", [(nic, received / 900)]),
        _c("windows_net_packets_sent_total", "(Network.PacketsSentPerSec)", [(nic, sent / 700)]),
        _c("windows_net_packets_received_errors_total", "(Network.PacketsReceivedErrors)", [(nic, 0)]),
        _c("windows_net_packets_outbound_errors_total", "(Network.PacketsOutboundErrors)", [(nic, 0)]),
        _g("windows_net_current_bandwidth_bytes", "(Network.CurrentBandwidth)", [(nic, 1250000000)]),
        _g("windows_net_nic_address_info",
           "A metric with a constant '1' value labeled with the network interface's address information.",
           [({"address": host.address, "family": "ipv4", "friendly_name": "Ethernet", "nic": NIC}, 1)]),
    ]  # fmt: skip


def _logical_disk(host: HostView) -> list[Family]:
    up = max(0.0, host.now - host.boot_time)
    volume = {"volume": "C:"}
    return [
        _g("windows_logical_disk_info", "A metric with a constant '1' value labeled with logical disk information",
           [({"disk": "0", "filesystem": "NTFS", "serial_number": "8A3C51F2", "type": "fixed",
              "volume": "C:", "volume_name": ""}, 1)]),
        _g("windows_logical_disk_size_bytes",
           "Total space in bytes, updates every 10-15 min (LogicalDisk.PercentFreeSpace_Base)", [(volume, host.disk_size)]),
        _g("windows_logical_disk_free_bytes",
           "Free space in bytes, updates every 10-15 min (LogicalDisk.PercentFreeSpace)",
           [(volume, max(0, host.disk_size - host.disk_used))]),
        _c("windows_logical_disk_read_bytes_total",
           "The number of bytes transferred from the disk during read operations (LogicalDisk.DiskReadBytesPerSec)",
           [(volume, up * 180000)]),
        _c("windows_logical_disk_write_bytes_total",
           "The number of bytes transferred to the disk during write operations (LogicalDisk.DiskWriteBytesPerSec)",
           [(volume, up * 95000 + host.disk_used)]),
        _g("windows_logical_disk_readonly", "Whether the logical disk is read-only", [(volume, 0)]),
    ]  # fmt: skip


class CollectorError(Exception):
    """A collector failed; windows_exporter logs it and reports ``collector_success`` 0."""


def _container(host: HostView) -> list[Family]:
    count = _g("windows_container_count", "Number of containers", [({}, len(host.containers))])
    if not host.containers:
        return [count]
    ids = [{"container_id": f"containerd://{cid}"} for cid, _ in host.containers]
    seconds = [max(0.0, host.now - started) * 0.01 for _, started in host.containers]
    working = _working_sets(host)
    families = [
        count,
        _c("windows_container_available", "Available", [(i, 1) for i in ids]),
        _g("windows_container_memory_usage_commit_bytes", "Memory Usage Commit Bytes",
           [(i, w * 1.6) for i, w in zip(ids, working, strict=True)]),
        _g("windows_container_memory_usage_commit_peak_bytes", "Memory Usage Commit Peak Bytes",
           [(i, w * 1.9) for i, w in zip(ids, working, strict=True)]),
        _g("windows_container_memory_usage_private_working_set_bytes", "Memory Usage Private Working Set Bytes",
           list(zip(ids, working, strict=True))),
        _c("windows_container_cpu_usage_seconds_total", "Total Run time in Seconds", list(zip(ids, seconds, strict=True))),
        _c("windows_container_cpu_usage_seconds_usermode", "Run Time in User mode in Seconds",
           [(i, s * 0.8) for i, s in zip(ids, seconds, strict=True)]),
        _c("windows_container_cpu_usage_seconds_kernelmode", "Run time in Kernel mode in Seconds",
           [(i, s * 0.2) for i, s in zip(ids, seconds, strict=True)]),
        _c("windows_container_storage_read_size_bytes_total", "Read Size Bytes", [(i, 4096 * 300) for i in ids]),
        _c("windows_container_storage_write_size_bytes_total", "Write Size Bytes", [(i, 4096 * 120) for i in ids]),
    ]  # fmt: skip
    if host.hns_endpoints == 0:
        raise CollectorError(
            "error in fetching container network statistics: no network stats for containers to collect",
            families,
        )
    return families


COLLECTORS: Final[Mapping[str, Callable[[HostView], list[Family]]]] = {
    "container": _container,
    "cpu": _cpu,
    "cpu_info": _cpu_info,
    "logical_disk": _logical_disk,
    "memory": _memory,
    "net": _net,
    "os": _os,
    "service": _service,
    "system": _system,
}
"""The collectors simulated, by windows_exporter's names."""


def collect(
    host: HostView, enabled: Sequence[str], version: str, log: Callable[[str], None]
) -> list[Family]:
    """Every enabled collector's families plus windows_exporter's own, for one scrape."""
    families: list[Family] = []
    duration, success, timeout = [], [], []
    for name in enabled:
        ok = 1.0
        try:
            families += COLLECTORS[name](host)
        except CollectorError as exc:
            ok = 0.0
            families += exc.args[1]
            log(f'level=WARN source=collect.go:212 msg="collector {name} failed after 1.2ms, '
                f'resulting in {len(exc.args[1])} metrics" err="{exc.args[0]}"')  # fmt: skip
        labels = {"collector": name}
        duration.append((labels, 0.0012))
        success.append((labels, ok))
        timeout.append((labels, 0.0))
    families += [
        _g("windows_exporter_collector_duration_seconds", "windows_exporter: Duration of a collection.", duration),
        _g("windows_exporter_collector_success", "windows_exporter: Whether the collector was successful.", success),
        _g("windows_exporter_collector_timeout", "windows_exporter: Whether the collector timed out.", timeout),
        _g("windows_exporter_scrape_duration_seconds", "windows_exporter: Total scrape duration.", [({}, 0.0125)]),
        _g("windows_exporter_build_info",
           "A metric with a constant '1' value labeled by version, revision, branch, goversion from which "
           "windows_exporter was built, and the goos and goarch for the build.",
           [({"branch": "HEAD", "goarch": "amd64", "goos": "windows", "goversion": "go1.24.3",
              "revision": "unknown", "tags": "unknown", "version": version}, 1)]),
    ]  # fmt: skip
    return families
