"""The state of one simulated Windows Server machine, without any SSH.

Disk, registry, service control manager, Windows features and capabilities, firewall rules and
identity. The shells (``powershell/``, ``shells/``) act on a :class:`Machine`; the SSH layer
(``ssh/``) and the life cycle (``host``) sit on top of it. Keeping this free of SSH
lets the interpreters be tested directly and keeps each concern small.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from wmco_sandbox.winhost.core.disk import DiskError, VirtualDisk
from wmco_sandbox.winhost.core.faults import Faults
from wmco_sandbox.winhost.core.processes import (
    ContainerBehaviour,
    CriRuntime,
    HostFacts,
    ProgramEnvironment,
    ProgramFactory,
    ServiceStatus,
)
from wmco_sandbox.winhost.core.profile import FAST, HostProfile
from wmco_sandbox.winhost.core.scm import ServiceControlManager
from wmco_sandbox.winhost.network.hns import HnsState

__all__ = ["IMAGES", "FirewallRule", "Machine", "NativeProgram", "Shell", "WindowsImage"]

OPENSSH_KEY = "hklm:\\software\\openssh"
CURRENT_VERSION_KEY = "hklm:\\software\\microsoft\\windows nt\\currentversion"
SSHD_EXE = "C:\\Windows\\System32\\OpenSSH\\sshd.exe"
POWERSHELL_EXE = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"


@dataclass(frozen=True, slots=True)
class WindowsImage:
    """A Windows Server release as the simulator models it.

    Attributes:
        year: ``"2019"``, ``"2022"`` or ``"2025"``.
        build: Build number (``"20348"``).
        ubr: Patch level (update build revision).
        display_version: ``DisplayVersion`` registry value (None on 2019).
        release_id: ``ReleaseId`` registry value.
        openssh_installed: OpenSSH Server ships installed (2025).
        openssh_version: ``sshd`` banner version.
    """

    year: str
    build: str
    ubr: int
    display_version: str | None
    release_id: str
    openssh_installed: bool
    openssh_version: str

    @property
    def product_name(self) -> str:
        """``Windows Server 2022 Datacenter``."""
        return f"Windows Server {self.year} Datacenter"


IMAGES = {
    "2019": WindowsImage("2019", "17763", 6893, None, "1809", False, "OpenSSH_for_Windows_7.7"),
    "2022": WindowsImage("2022", "20348", 2527, "21H2", "2009", False, "OpenSSH_for_Windows_8.1"),
    "2025": WindowsImage("2025", "26100", 1742, "24H2", "2009", True, "OpenSSH_for_Windows_9.5"),
}


@dataclass
class FirewallRule:
    """An inbound firewall rule created by ``New-NetFirewallRule``."""

    name: str
    display_name: str
    direction: str = "Inbound"
    action: str = "Allow"
    protocol: str = "TCP"
    local_port: str = "Any"
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class NativeResult:
    """Outcome of a native program: exit code and the two streams."""

    code: int
    stdout: str = ""
    stderr: str = ""


NativeProgram = Callable[["Machine", list[str]], NativeResult]
"""A pluggable program: gets the machine and argv, returns its result (e.g. WICD)."""

Shell = Callable[["Machine", str], Awaitable[NativeResult]]
"""A command interpreter started as a program (``cmd.exe``, ``powershell.exe``): gets the
machine and the whole command line."""


@dataclass
class Machine:
    r"""Everything a shell command can observe or change on one host.

    Attributes:
        facts: Identity (host name, address, build...).
        image: The Windows release.
        faults: Live faults.
        disk: The C: drive.
        registry: Key (lower-case ``hklm:\\...``) -> value name (lower) -> (name, value, type).
        features: Windows feature (Server Manager name, lower) -> DISM state (``Enabled``,
            ``Disabled``, ``EnablePending``): ``containers`` and ``hyper-v``.
        virtualization_extensions: The processor exposes hardware virtualisation to Windows
            (bare metal, or a VM with nested virtualisation): the Hyper-V role can be installed.
        capabilities: Installed Windows capabilities (lower-case names).
        firewall: Firewall rules.
        programs: Extra native programs by lower-case base name (``foo.exe``).
        shells: The interpreters by base name (``cmd``, ``powershell``), filled in by the host.
        log_lines: Host log (service failures, reboots, user data).
        kubelet_log: Lines the kubelet logged.
        program_factories: Program simulations by image name, run by the SCM.
        hns: The Host Networking Service's networks and endpoints.
        container_behaviours: What containers of an image do when they start (by image name
            without tag), e.g. the sandbox's stand-in for a HostProcess CNI DaemonSet.
        service_logs: Lines each program logged, by lower-case service name.
        reboot_requested: Set by ``Restart-Computer``.
        computer_name: What ``hostname`` prints (default: the host name upper-cased).
        pending_computer_name: Set by ``Rename-Computer``; applied at the next boot.
        mac_address: The adapter's MAC address.
        boot_time: Unix time of the latest boot (set by the host's power-on).
        profile: How long the slow parts take (shell starts, transfers, service starts...).
        clock_offset: Seconds the host's clock is ahead of the real time (negative: behind);
            what ``Get-Date`` shows (preflight's time-skew check).
        volume_size: Size in bytes of the C: volume ``Get-PSDrive`` reports when the disk has
            no ``capacity`` (with a capacity: capacity + :attr:`system_used`).
        system_used: Bytes of C: used by Windows itself, outside the simulated files.
        dns_names: What the host's resolver answers for A lookups: lower-case name -> IPv4s
            (its own computer name always resolves to its address).
        dns_ptr: PTR records the host's resolver answers: IPv4 -> host name.
        unpacked: Every archive ``tar -x`` unpacked: its path and the member names it wrote
            (what a test reads to see which files a pass sent).
        installing: Features ``Install-WindowsFeature`` is installing right now (lower-case
            names; what a test reads to see an install still under way).
    """

    facts: HostFacts
    image: WindowsImage
    faults: Faults
    disk: VirtualDisk
    program_factories: dict[str, ProgramFactory] = field(default_factory=dict)
    registry: dict[str, dict[str, tuple[str, object, str]]] = field(default_factory=dict)
    features: dict[str, str] = field(default_factory=dict)
    virtualization_extensions: bool = True
    capabilities: set[str] = field(default_factory=set)
    firewall: list[FirewallRule] = field(default_factory=list)
    programs: dict[str, NativeProgram] = field(default_factory=dict)
    shells: dict[str, Shell] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    kubelet_log: list[str] = field(default_factory=list)
    reboot_requested: bool = False
    computer_name: str = ""
    pending_computer_name: str | None = None
    mac_address: str = "02-00-00-00-00-01"
    hns: HnsState = field(default_factory=HnsState)
    container_behaviours: dict[str, ContainerBehaviour] = field(default_factory=dict)
    service_logs: dict[str, list[str]] = field(default_factory=dict)
    boot_time: float = 0.0
    profile: HostProfile = FAST
    clock_offset: float = 0.0
    volume_size: int = 127 * 2**30
    system_used: int = 20 * 2**30
    dns_names: dict[str, list[str]] = field(default_factory=dict)
    dns_ptr: dict[str, str] = field(default_factory=dict)
    unpacked: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    installing: set[str] = field(default_factory=set)
    scm: ServiceControlManager = field(init=False)

    def __post_init__(self) -> None:
        if not self.computer_name:
            self.computer_name = self.facts.hostname.upper()
        octets = [int(x) for x in self.facts.address.split(".")] if self.facts.address else []
        if len(octets) == 4:
            self.mac_address = "02-00-" + "-".join(f"{o:02X}" for o in octets)
        self.scm = ServiceControlManager(
            self.disk,
            self.faults,
            self._program_env,
            self.program_factories,
            self.log,
            start_time=lambda: self.profile.service_start,
        )
        self.disk.held_paths = self.scm.held_paths
        self.hns.available = self._hns_available
        self._install_base()

    # -- set up -------------------------------------------------------------------------------
    def _install_base(self) -> None:
        for d in (
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
            "C:\\Windows\\Temp",
            "C:\\Users\\Administrator",
            "C:\\ProgramData",
            "C:\\Program Files",
        ):
            self.disk.mkdir(d)
        for exe in ("cmd.exe", "sc.exe", "tar.exe", "hostname.exe", "ipconfig.exe", "icacls.exe"):
            self.disk.write_file(f"C:\\Windows\\System32\\{exe}", b"MZ")
        self.disk.write_file(POWERSHELL_EXE, b"MZ")
        img = self.image
        values: dict[str, object] = {
            "CurrentBuildNumber": img.build,
            "CurrentBuild": img.build,
            "UBR": img.ubr,
            "ProductName": img.product_name,
            "ReleaseId": img.release_id,
            "EditionID": "ServerDatacenter",
            "InstallationType": "Server",
            "CurrentMajorVersionNumber": 10,
            "CurrentMinorVersionNumber": 0,
            "CurrentVersion": "6.3",
        }
        if img.display_version:
            values["DisplayVersion"] = img.display_version
        self.registry[CURRENT_VERSION_KEY] = {
            k.lower(): (k, v, "DWord" if isinstance(v, int) else "String")
            for k, v in values.items()
        }
        self.features["containers"] = "Disabled"
        self.features["hyper-v"] = "Disabled"
        if img.openssh_installed:
            self.install_openssh()

    def install_openssh(self) -> bool:
        """Install the OpenSSH Server capability; False if it was already installed."""
        if "openssh.server~~~~0.0.1.0" in self.capabilities:
            return False
        self.capabilities.add("openssh.server~~~~0.0.1.0")
        self.disk.mkdir("C:\\Windows\\System32\\OpenSSH")
        self.disk.write_file(SSHD_EXE, b"MZ")
        self.registry.setdefault(OPENSSH_KEY, {})
        self.scm.create("sshd", SSHD_EXE, display_name="OpenSSH SSH Server")
        self.scm.create(
            "ssh-agent",
            "C:\\Windows\\System32\\OpenSSH\\ssh-agent.exe",
            display_name="OpenSSH Authentication Agent",
            start_type="disabled",
        )
        self.firewall.append(
            FirewallRule("OpenSSH-Server-In-TCP", "OpenSSH SSH Server (sshd)", local_port="22")
        )
        return True

    # -- queries ------------------------------------------------------------------------------
    def log(self, line: str) -> None:
        """Append to the host log."""
        self.log_lines.append(line)

    def default_shell(self) -> str:
        """``powershell``, ``cmd`` or ``other``, by sshd's rules on ``DefaultShell``."""
        entry = self.registry.get(OPENSSH_KEY, {}).get("defaultshell")
        value = str(entry[1]) if entry else ""
        if not value:
            return "cmd"
        path = value.replace("/", "\\").lower()
        if "system32\\cmd" in path:
            return "cmd"
        if "powershell" in path:
            return "powershell"
        return "other"

    def firewall_allows(self, port: int) -> bool:
        """Whether an enabled inbound allow rule covers TCP ``port``."""
        for rule in self.firewall:
            if not (rule.enabled and rule.direction.lower() == "inbound"):
                continue
            if rule.action.lower() != "allow" or rule.protocol.upper() not in ("TCP", "ANY"):
                continue
            ports = [p.strip() for p in rule.local_port.split(",")]
            if "Any" in ports or str(port) in ports:
                return True
        return False

    def _program_env(self, service: str) -> ProgramEnvironment:
        return _ProgramEnv(self, service)

    def _hns_available(self) -> bool:
        """HNS (vmcompute, computenetwork) exists once the Containers feature is enabled."""
        return self.features.get("containers") == "Enabled"

    def hyperv_running(self) -> bool:
        """The hypervisor runs: the Hyper-V role is enabled (after its reboot) on capable hardware."""
        return self.virtualization_extensions and self.features.get("hyper-v") == "Enabled"

    def cri(self) -> CriRuntime | None:
        """The CRI of the running containerd service, if its process offers one."""
        svc = self.scm.get("containerd")
        if svc is None or not self.scm.running("containerd") or svc.process is None:
            return None
        process = svc.process
        return process if hasattr(process, "run_pod_sandbox") else None  # type: ignore[return-value]

    def service_log(self, service: str) -> list[str]:
        """The lines a program logged (the kubelet's are also in :attr:`kubelet_log`)."""
        return self.service_logs.setdefault(service.lower(), [])


def _log_runner_file(argv: list[str]) -> str | None:
    """The ``-log-file`` of a ``kube-log-runner.exe`` command line (None if not wrapped)."""
    base = argv[0].replace("/", "\\").rsplit("\\", 1)[-1].lower() if argv else ""
    if base not in ("kube-log-runner.exe", "kube-log-runner"):
        return None
    for index, arg in enumerate(argv[1:], start=1):
        if not arg.startswith("-"):
            return None
        name, eq, value = arg.lstrip("-").partition("=")
        if name == "log-file":
            if eq:
                return value
            return argv[index + 1] if index + 1 < len(argv) else None
    return None


class _ProgramEnv:
    """The :class:`ProgramEnvironment` a machine offers to the program of one service.

    A program wrapped in ``kube-log-runner.exe -log-file=X`` also has its log lines appended
    to ``X`` (what the log runner does with the child's output), when X's directory exists.
    """

    def __init__(self, machine: Machine, service: str) -> None:
        self.machine = machine
        self.service = service
        self.facts = machine.facts
        self.disk = machine.disk
        self.hns = machine.hns
        svc = machine.scm.get(service)
        self.log_file = _log_runner_file(svc.argv) if svc is not None else None

    def cri(self) -> CriRuntime | None:
        return self.machine.cri()

    def hyperv_running(self) -> bool:
        return self.machine.hyperv_running()

    @property
    def boot_time(self) -> float:
        return self.machine.boot_time

    def services(self) -> list[ServiceStatus]:
        states = {1: "stopped", 2: "start pending", 3: "stop pending", 4: "running"}
        return [
            ServiceStatus(
                name=svc.name,
                display_name=svc.display_name or svc.name,
                state=states.get(int(svc.state), "stopped"),
                start_type=svc.start_type,
                bin_path=svc.bin_path,
                pid=svc.pid,
                started_at=svc.started_at,
            )
            for svc in self.machine.scm.services.values()
        ]

    def read_file(self, path: str) -> bytes | None:
        return self.machine.disk.read_file(path)

    def write_file(self, path: str, data: bytes) -> None:
        parts = self.machine.disk.parse(path)
        self.machine.disk.mkdir(self.machine.disk.format(parts[:-1]))
        self.machine.disk.write_file(path, data)

    def service_running(self, name: str) -> bool:
        return self.machine.scm.running(name)

    def firewall_allows(self, port: int) -> bool:
        return self.machine.firewall_allows(port)

    def log(self, line: str) -> None:
        if self.service.lower() == "kubelet":
            self.machine.kubelet_log.append(line)
        self.machine.service_log(self.service).append(line)
        if self.log_file is not None:
            with contextlib.suppress(DiskError):
                self.machine.disk.append_file(
                    self.log_file, line.encode("utf-8", "replace") + b"\n"
                )

    def exited(self, code: int, reason: str) -> None:
        self.machine.scm.process_exited(self.service, code, reason)
