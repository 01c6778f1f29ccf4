"""One simulated Windows Server host: machine state, SSH server and its life cycle.

``boot()`` powers the host on: auto-start services start (in dependency order), then the
user data runs. The SSH listener exists only while the ``sshd`` service runs, so a host whose
user data did not install and start OpenSSH refuses connections, exactly like a fresh Windows
Server 2019/2022. ``Restart-Computer`` drops every connection without an exit status, keeps the
port closed for ``faults.reboot_unreachable`` seconds, then boots again (same host key). An HNS
change that rebinds the virtual switch (first/last switch network) drops every connection too.

The node agents (``kube-proxy``, ``hybrid-overlay-node``, ``windows_exporter``; ``agents/``) are
registered here as program factories; the kubelet (and containerd) come from the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import socket
import time
from collections.abc import Sequence

import asyncssh

from wmco_sandbox.winhost import containerd
from wmco_sandbox.winhost.agents.exporter import exporter_factory
from wmco_sandbox.winhost.agents.hybridoverlay import hybrid_overlay_factory
from wmco_sandbox.winhost.agents.kubeproxy import kube_proxy_factory
from wmco_sandbox.winhost.core.disk import FileNode, VirtualDisk
from wmco_sandbox.winhost.core.faults import CommandRecord, Faults
from wmco_sandbox.winhost.core.machine import IMAGES, OPENSSH_KEY, POWERSHELL_EXE, Machine
from wmco_sandbox.winhost.core.processes import HostFacts, ProgramFactory
from wmco_sandbox.winhost.core.profile import HostProfile
from wmco_sandbox.winhost.core.userdata import UserData, parse_user_data
from wmco_sandbox.winhost.powershell.session import (
    PowerShellSession,
    ShellResult,
    run_powershell_exe,
)
from wmco_sandbox.winhost.shells.cmd import run_cmd, run_cmd_exe
from wmco_sandbox.winhost.ssh.endpoint import Traffic
from wmco_sandbox.winhost.ssh.server import ADMIN_KEYS, WinSSHServer, authorized_blobs

__all__ = ["WindowsHost", "allocate_address"]

_addresses = itertools.count(0)
_BLOCK = os.getpid() % 240
"""Where this process's addresses start: a simulated kubelet binds ``<address>:10250``, so two
processes on one machine (two test sessions, a benchmark beside a sandbox) must not hand out the
same addresses."""


def allocate_address() -> str:
    """A fresh loopback address (127.0.x.y, 10 <= x < 250) for a new host in this process."""
    n = next(_addresses)
    return f"127.0.{10 + (_BLOCK + n // 250) % 240}.{2 + n % 250}"


class WindowsHost:
    """A simulated Windows Server reachable over SSH on a loopback address.

    Args:
        address: IPv4 to listen on (default: a fresh 127.0.x.y).
        port: SSH port (0 = pick a free one at first start; kept across reboots).
        hostname: Host name (lower case; default ``win-<hex>``).
        image: ``"2019"``, ``"2022"`` or ``"2025"``.
        host_key_type: ``"ed25519"`` or ``"rsa"``.
        users: Administrator accounts that may log in.
        kubelet_factory: Kubelet simulation for services running ``kubelet.exe``.
        sink_threshold: Files above this size keep only size + SHA-256 (None = keep bytes).
        disk_capacity: Disk size in bytes (None = unlimited).
        faults: Initial faults (changeable at run time through ``host.faults``).
        preinstalled_sshd: The image already runs sshd with port 22 open (but has no keys).
        max_sessions: sshd ``MaxSessions``: session channels open at once per connection.
        virtualization_extensions: The processor exposes hardware virtualisation (bare metal or
            nested virtualisation): without it the Hyper-V role cannot be installed.
        profile: How long the slow parts take (default: the ``fast`` profile of the tests).
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        port: int = 0,
        hostname: str | None = None,
        image: str = "2022",
        host_key_type: str = "ed25519",
        users: Sequence[str] = ("Administrator",),
        kubelet_factory: ProgramFactory | None = None,
        sink_threshold: int | None = None,
        disk_capacity: int | None = None,
        faults: Faults | None = None,
        preinstalled_sshd: bool = False,
        max_sessions: int = 10,
        virtualization_extensions: bool = True,
        profile: HostProfile | None = None,
    ) -> None:
        self.max_sessions = max_sessions
        self.address = address or allocate_address()
        self.port = port
        win = IMAGES[image]
        digest = hashlib.sha256(self.address.encode()).hexdigest()[:6]
        name = (hostname or f"win-{digest}").lower()
        self.facts = HostFacts(
            hostname=name,
            address=self.address,
            windows_build=f"10.0.{win.build}",
            os_image=win.product_name,
            kernel_version=f"10.0.{win.build}.{win.ubr}",
        )
        initial = faults or Faults()
        disk = VirtualDisk(capacity=disk_capacity, sink_threshold=sink_threshold, faults=initial)
        self.machine = Machine(self.facts, win, initial, disk)
        self.machine.virtualization_extensions = virtualization_extensions
        if kubelet_factory is not None:
            self.machine.program_factories["kubelet"] = kubelet_factory
        self.machine.program_factories["containerd"] = containerd.ContainerdFactory(
            self.machine.container_behaviours
        )
        self.machine.shells.update(cmd=run_cmd_exe, powershell=run_powershell_exe)
        self.users = {u.lower() for u in users}
        algorithm = "ssh-ed25519" if host_key_type == "ed25519" else "ssh-rsa"
        self.host_key = asyncssh.generate_private_key(algorithm)
        self.command_log: list[CommandRecord] = []
        self.userdata_results: list[ShellResult] = []
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self.traffic = Traffic()
        self.boot_count = 0
        self.up = asyncio.Event()
        self._listener: asyncssh.SSHAcceptor | None = None
        self._user_data = UserData(None, False)
        self._reboot_task: asyncio.Task[None] | None = None
        self._bytes: dict[int, int] = {}
        self.machine.scm.hooks["sshd"] = self._sshd_hook
        self.machine.hns.on_connectivity_blip = self._connectivity_blip
        self.machine.program_factories.setdefault("kube-proxy", kube_proxy_factory)
        self.machine.program_factories.setdefault("hybrid-overlay-node", hybrid_overlay_factory)
        self.machine.program_factories.setdefault("windows_exporter", exporter_factory)
        if profile is not None:
            self.apply_profile(profile)
        if preinstalled_sshd:
            self.machine.install_openssh()
            svc = self.machine.scm.require("sshd")
            svc.start_type = "auto"

    # -- public API ---------------------------------------------------------------------------
    def apply_profile(self, profile: HostProfile) -> None:
        """Make the host take ``profile``'s time for shells, transfers, services and reboots."""
        self.machine.profile = profile
        self.faults.reboot_unreachable = profile.reboot

    @property
    def faults(self) -> Faults:
        """Live faults; mutate them, or assign a new :class:`Faults` (it reaches every part)."""
        return self.machine.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self.machine.faults = value
        self.machine.disk.faults = value
        self.machine.scm.faults = value

    @property
    def host_public_key(self) -> asyncssh.SSHKey:
        """The host key's public half (pin it in clients)."""
        return self.host_key.convert_to_public()

    @property
    def listening(self) -> bool:
        """Whether the SSH port accepts connections now."""
        return self._listener is not None

    @property
    def kubelet_log(self) -> list[str]:
        """Lines the kubelet simulation logged."""
        return self.machine.kubelet_log

    @property
    def log(self) -> list[str]:
        """The host log (service failures, reboots)."""
        return self.machine.log_lines

    async def boot(self, user_data: str | None = None) -> None:
        """First power-on: start auto services, then run the user data (if any)."""
        self._user_data = parse_user_data(user_data)
        await self._power_on(first=True)

    async def stop(self) -> None:
        """Power off for good: drop connections, close the port, stop services."""
        if self._reboot_task is not None:
            self._reboot_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reboot_task
            self._reboot_task = None
        await self._power_off()

    async def reboot(self) -> None:
        """Reboot as ``Restart-Computer -Force`` does and wait for the reboot to finish."""
        self.machine.reboot_requested = True
        self.request_reboot()
        assert self._reboot_task is not None
        await self._reboot_task

    def request_reboot(self) -> None:
        """Start a reboot in the background (called when a command asked for one)."""
        if self._reboot_task is None or self._reboot_task.done():
            self.up.clear()
            self._reboot_task = asyncio.get_running_loop().create_task(self._reboot())

    async def wait_rebooted(self, timeout: float = 10.0) -> None:
        """Wait until a pending reboot finished (raises TimeoutError)."""
        task = self._reboot_task
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout)

    async def run(self, command: str, *, shell: str | None = None) -> ShellResult:
        """Run a command directly (no SSH), in the default shell or the one named.

        A command that cut the host's connectivity (an HNS network change) gets no exit status
        (``code`` None), as its SSH client would see it.
        """
        chosen = shell or self.machine.default_shell()
        blips = self.machine.hns.blips
        if chosen == "powershell":
            result = await PowerShellSession(self.machine).run(command)
        else:
            native = await run_cmd(self.machine, command)
            result = ShellResult(native.code, native.stdout, native.stderr)
        if self.machine.hns.blips != blips:
            return ShellResult(None, result.stdout, result.stderr)
        return result

    def key_allowed(self, username: str, blob: bytes) -> bool:
        """Sshd's decision for a public key (see module doc)."""
        if self.faults.refuse_auth or username.lower() not in self.users:
            return False
        node = self.machine.disk.get(ADMIN_KEYS)
        if not isinstance(node, FileNode) or node.data is None or not node.restricted_acl:
            return False
        return blob in authorized_blobs(bytes(node.data))

    def count_bytes(self, conn: object, count: int) -> bool:
        """Account SFTP bytes on a connection; True when the drop fault triggers."""
        key = id(conn)
        self._bytes[key] = self._bytes.get(key, 0) + count
        limit = self.faults.drop_after_bytes
        return limit is not None and self._bytes[key] > limit

    # -- life cycle ---------------------------------------------------------------------------
    async def _power_on(self, *, first: bool) -> None:
        self.boot_count += 1
        self.machine.boot_time = time.time()
        self.machine.reboot_requested = False
        if self.machine.pending_computer_name:
            self.machine.computer_name = self.machine.pending_computer_name
            self.machine.pending_computer_name = None
        for name, state in list(self.machine.features.items()):
            if state == "EnablePending":
                self.machine.features[name] = "Enabled"
        await self.machine.scm.start_automatic()
        data = self._user_data
        if data.script is not None and (first or data.persist):
            session = PowerShellSession(self.machine, user="SYSTEM", console=True)
            result = await session.run(data.script)
            self.userdata_results.append(result)
            self.machine.log(f"user data exited with {result.code}")
        self.up.set()

    async def _power_off(self) -> None:
        self.up.clear()
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()
        await self._close_listener()
        await self.machine.scm.stop_all()

    async def _reboot(self) -> None:
        self.machine.log("reboot")
        await asyncio.sleep(0)
        await self._power_off()
        self.machine.hns.reboot()
        if self.faults.never_return_from_reboot:
            return
        await asyncio.sleep(self.faults.reboot_unreachable)
        await self._power_on(first=False)

    def _connectivity_blip(self) -> None:
        """HNS (re)bound the virtual switch: every SSH connection drops, without exit status."""
        self.machine.log("connectivity blip: HNS virtual switch change")
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()

    async def _sshd_hook(self, started: bool) -> None:
        if started:
            await self._open_listener()
            self.machine.disk.mkdir("C:\\ProgramData\\ssh")
            if self.machine.disk.get("C:\\ProgramData\\ssh\\sshd_config") is None:
                self.machine.disk.write_file(
                    "C:\\ProgramData\\ssh\\sshd_config",
                    b"AuthorizedKeysFile\t.ssh/authorized_keys\r\nSubsystem\tsftp\tsftp-server.exe\r\n"
                    b"Match Group administrators\r\n"
                    b"       AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys\r\n",
                )
        else:
            await self._close_listener()

    async def _open_listener(self) -> None:
        if self._listener is not None:
            return
        self._listener = await asyncssh.listen(
            self.address,
            self.port,
            server_factory=lambda: WinSSHServer(self),
            server_host_keys=[self.host_key],
            encoding=None,
            server_version=self.machine.image.openssh_version,
            agent_forwarding=False,
            x11_forwarding=False,
            reuse_address=True,
            family=socket.AF_INET,
        )
        self.port = self._listener.get_port()

    async def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            await listener.wait_closed()

    def default_shell_is_powershell(self) -> bool:
        """Whether sshd would run commands in PowerShell."""
        entry = self.machine.registry.get(OPENSSH_KEY, {}).get("defaultshell")
        return entry is not None and POWERSHELL_EXE.lower() in str(entry[1]).lower()
