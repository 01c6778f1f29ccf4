"""``wmco preflight`` against strict simulated hosts, with the real API server for the clock.

The command runs as a user would run it (the click CLI, in a thread with its own event loop)
against a host set up by hand (OpenSSH, PowerShell as the shell, the key, the firewall rules).
A host that is ready passes with exit 0 and the check changes nothing on it: its command log
holds only the read-only forms, and its registry, disk, services and firewall are unchanged.
Each way a host can be unready makes its row FAIL with its hint, and the exit code 1.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncssh
import pytest
from click.testing import CliRunner, Result
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Secret

import join_helpers
from wmco import cli, names
from wmco.tools import preflight
from wmco.windows import commands, toolcommands
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost.core.disk import DirNode, FileNode
from wmco_sandbox.winhost.core.machine import CURRENT_VERSION_KEY, OPENSSH_KEY, FirewallRule
from wmco_sandbox.winhost.host import WindowsHost

pytestmark = [pytest.mark.integration]

API_NAME = "api.cluster.test"
READ_ONLY_FORMS = {
    toolcommands.file_acl(toolcommands.ADMIN_AUTHORIZED_KEYS),
    toolcommands.default_shell(),
    commands.hostname(),
    commands.os_build(),
    commands.windows_feature_state("Containers"),
    commands.windows_feature_state("Hyper-V"),
    toolcommands.system_drive_free(),
    toolcommands.system_drive_used(),
    toolcommands.local_time(),
    toolcommands.inbound_port_filters(),
    toolcommands.resolve_name(API_NAME),
}
STATE_CHANGING = re.compile(
    r"\b(New|Set|Remove|Add|Install|Enable|Disable|Start|Stop|Restart|Rename|Move|Copy)-"
    r"|sc\.exe (create|config|start|stop|delete|failure|description)|/grant|/inheritance",
    re.IGNORECASE,
)


@dataclasses.dataclass
class Ready:
    """A host ready to join, and how to run preflight against it."""

    host: WindowsHost
    key_file: Path
    kubeconfig: Path

    def args(self, *extra: str) -> list[str]:
        return [
            "preflight", self.host.address, "--port", str(self.host.port),
            "--key", str(self.key_file), "--kubeconfig", str(self.kubeconfig),
            "--api-server-url", f"https://{API_NAME}:6443", "--timeout", "3", *extra,
        ]  # fmt: skip


@pytest.fixture
async def ready(control_plane: ControlPlane, tmp_path: Path) -> AsyncIterator[Ready]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "id_ed25519"
    key_file.write_bytes(key.export_private_key())
    host = WindowsHost()
    await host.boot(join_helpers.user_data(key.export_public_key().decode().strip()))
    # What the user data of a bring-your-own host does not do, a ready host has: metrics port
    # open, DNS names for the API server and the host's address.
    host.machine.firewall.append(FirewallRule("metrics", "windows_exporter", local_port="9182"))
    host.machine.dns_names[API_NAME] = ["127.0.0.1"]
    host.machine.dns_ptr[host.address] = host.facts.hostname + ".cluster.test"
    try:
        yield Ready(host, key_file, control_plane.kubeconfig)
    finally:
        await host.stop()


async def invoke(args: list[str]) -> Result:
    """Run the CLI in a thread: it runs its own event loop while the host answers in ours."""
    return await asyncio.to_thread(CliRunner().invoke, cli.main, args, catch_exceptions=False)


def row(output: str, check: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(check + " ")]
    assert len(lines) == 1, output
    return lines[0]


def status(output: str, check: str) -> str:
    return row(output, check)[len(check) :].split()[0]


def snapshot(host: WindowsHost) -> object:
    machine = host.machine

    def tree(node: DirNode, prefix: str) -> dict[str, object]:
        out: dict[str, object] = {}
        for shown, child in node.children.values():
            path = prefix + "\\" + shown
            if isinstance(child, FileNode):
                out[path] = (child.sha256(), child.acl_inherit, child.acl_grants)
            else:
                out.update(tree(child, path))
        return out

    services = {
        name: (svc.state, svc.bin_path, svc.start_type, svc.pid)
        for name, svc in machine.scm.services.items()
    }
    return (
        copy.deepcopy(machine.registry),
        tree(machine.disk.root, ""),
        services,
        [dataclasses.astuple(rule) for rule in machine.firewall],
        dict(machine.features),
        machine.computer_name,
        host.boot_count,
    )


async def test_ready_host_passes_and_nothing_on_it_changes(ready: Ready, kube: AsyncClient) -> None:
    before = snapshot(ready.host)
    sent_before = len(ready.host.command_log)
    # The key from the cluster's Secret this time (no --key): what the operator will use.
    namespace = f"pf-{ready.host.address.replace('.', '-')}"
    await kube.create(Namespace(metadata=ObjectMeta(name=namespace)))
    try:
        await kube.create(
            Secret(
                metadata=ObjectMeta(name=names.PRIVATE_KEY_SECRET, namespace=namespace),
                data={
                    names.PRIVATE_KEY_SECRET_KEY: base64.b64encode(
                        ready.key_file.read_bytes()
                    ).decode()
                },
            )
        )
        args = ready.args("--namespace", namespace)
        key_at = args.index("--key")
        del args[key_at : key_at + 2]
        result = await invoke(args)
    finally:
        await kube.delete(Namespace, namespace)

    assert result.exit_code == 0, result.output
    for check in (
        "SSH login", "authorized keys ACL", "default shell", "Windows build", "free space on C:",
        "clock skew", "firewall: TCP 10250", "firewall: TCP 9182", "host name",
        "DNS: API server name",
    ):  # fmt: skip
        assert status(result.output, check) == "PASS", result.output
    assert status(result.output, "DNS: reverse lookup (optional)") == "PASS"
    # Containers is not installed yet: the operator will install it, so only a warning.
    assert status(result.output, "Containers feature") == "WARN"
    assert "installs it with a reboot" in row(result.output, "Containers feature")
    assert "host is ready to join" in result.output

    sent = [record.command for record in ready.host.command_log[sent_before:]]
    assert sent, "preflight sent nothing"
    reverse = toolcommands.resolve_address(ready.host.address)
    assert set(sent) <= READ_ONLY_FORMS | {reverse}, set(sent) - READ_ONLY_FORMS
    assert not [c for c in sent if STATE_CHANGING.search(c)]
    assert snapshot(ready.host) == before


def _remove_default_shell(host: WindowsHost) -> None:
    del host.machine.registry[OPENSSH_KEY]["defaultshell"]


def _old_build(host: WindowsHost) -> None:
    name, _, kind = host.machine.registry[CURRENT_VERSION_KEY]["currentbuildnumber"]
    host.machine.registry[CURRENT_VERSION_KEY]["currentbuildnumber"] = (name, "14393", kind)


def _containers_removed(host: WindowsHost) -> None:
    host.machine.features["containers"] = "DisabledWithPayloadRemoved"


def _disk_nearly_full(host: WindowsHost) -> None:
    host.machine.disk.capacity = host.machine.disk.used + 2**30


def _clock_ahead(host: WindowsHost) -> None:
    host.machine.clock_offset = 900.0


def _port_closed(port: str) -> Callable[[WindowsHost], None]:
    def close(host: WindowsHost) -> None:
        host.machine.firewall[:] = [r for r in host.machine.firewall if r.local_port != port]

    return close


def _bad_name(host: WindowsHost) -> None:
    host.machine.computer_name = "WIN_NODE_01"


def _api_name_unknown(host: WindowsHost) -> None:
    host.machine.dns_names.clear()


def _key_refused(host: WindowsHost) -> None:
    host.faults.refuse_auth = True


def _acl_too_open(host: WindowsHost) -> None:
    node = host.machine.disk.get(toolcommands.ADMIN_AUTHORIZED_KEYS)
    assert isinstance(node, FileNode)
    node.acl_grants = node.acl_grants | {"users:r"}


FAILURES = {
    "key refused": (_key_refused, "SSH login", "administrators_authorized_keys"),
    # sshd ignores a key file others can read: the login fails and says how to fix the ACL.
    "key file ACL": (_acl_too_open, "SSH login", "/inheritance:r /grant 'Administrators:F'"),
    "cmd shell": (_remove_default_shell, "default shell", "New-ItemProperty"),
    "old build": (_old_build, "Windows build", "2022 (20348)"),
    "containers removed": (_containers_removed, "Containers feature", "cannot install it"),
    "disk full": (_disk_nearly_full, "free space on C:", "imagefs.available"),
    "clock skew": (_clock_ahead, "clock skew", "w32tm"),
    "10250 closed": (_port_closed("10250"), "firewall: TCP 10250", "-LocalPort 10250"),
    "9182 closed": (_port_closed("9182"), "firewall: TCP 9182", "-LocalPort 9182"),
    "bad host name": (_bad_name, "host name", "Rename-Computer"),
    "API name unknown": (_api_name_unknown, "DNS: API server name", "DNS"),
}


@pytest.mark.parametrize("case", list(FAILURES))
async def test_each_unready_host_fails_its_row_with_a_hint(ready: Ready, case: str) -> None:
    break_host, check, hint = FAILURES[case]
    break_host(ready.host)

    result = await invoke(ready.args())

    assert result.exit_code == 1, result.output
    line = row(result.output, check)
    assert status(result.output, check) == "FAIL", result.output
    assert hint in line, line
    assert "host is NOT ready to join" in result.output
    failed = [c for c in _checks(result.output) if status(result.output, c) == "FAIL"]
    assert failed == [check], result.output


def _checks(output: str) -> list[str]:
    shown = []
    for check in preflight.CHECKS:
        optional = " (optional)" if check in ("Hyper-V feature", "DNS: reverse lookup") else ""
        if any(line.startswith(check + optional + " ") for line in output.splitlines()):
            shown.append(check + optional)
    return shown


async def test_without_a_kubeconfig_the_clock_is_a_warning_not_a_failure(ready: Ready) -> None:
    ready.host.machine.clock_offset = 900.0  # would fail with a kubeconfig
    args = ready.args()
    at = args.index("--kubeconfig")
    del args[at : at + 2]

    result = await invoke(args)

    assert result.exit_code == 0, result.output
    assert status(result.output, "clock skew") == "WARN"
    assert "needs --kubeconfig" in row(result.output, "clock skew")
