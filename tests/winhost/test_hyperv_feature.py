"""Contract suite: the Hyper-V forms of docs/windows-surface.md, and what Hyper-V means to containerd.

Through a real SSH client: Server Manager's view of the role (``Get-WindowsFeature``, its table
and its ``InstallState``), installing it (``EnablePending`` until a reboot, Windows' result row
and warning), the failed prerequisite check of a VM without nested virtualisation (Windows' text,
exit 1, nothing changes), and DISM's different name for the same role. Then, on the machine
directly, the simulated containerd: a runtime with ``SandboxIsolation = 1`` starts a pod only
when the hypervisor runs, with HCS's refusal otherwise.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncssh
import pytest
from winhost_helpers import connect, flat

from containerd_helpers import (
    CNI_CONF,
    CONF,
    WMCO_TOML,
    cni_conf,
    make_overlay,
    new_machine,
    start_containerd,
)
from wmco_sandbox.winhost.core.processes import CriError, PodSandboxRequest
from wmco_sandbox.winhost.host import WindowsHost

CRLF = "\r\n"
STATE = "(Get-WindowsFeature -Name 'Hyper-V').InstallState"
INSTALL = "$ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name 'Hyper-V'"
HEADER = (
    CRLF
    + "Success Restart Needed Exit Code      Feature Result"
    + CRLF
    + "------- -------------- ---------      --------------"
    + CRLF
)
TABLE_HEAD = (
    CRLF
    + "Display Name                                            Name                       Install State"
    + CRLF
    + "------------                                            ----                       -------------"
    + CRLF
)


def unwrap(stderr: str) -> str:
    """Undo the 5.1 hard wrap of CategoryInfo/FullyQualifiedErrorId lines."""
    return re.sub(r"\r\n   (?=\S)", "", stderr)


async def run(conn: asyncssh.SSHClientConnection, command: str) -> asyncssh.SSHCompletedProcess:
    return await conn.run(command, check=False)


@pytest.fixture
async def nested_less(
    user_data: str, client_key: asyncssh.SSHKey
) -> AsyncIterator[tuple[WindowsHost, asyncssh.SSHClientConnection]]:
    host = WindowsHost(image="2022", virtualization_extensions=False)
    await host.boot(user_data)
    conn = await connect(host, client_key)
    yield host, conn
    conn.close()
    await host.stop()


async def test_get_windows_feature_shows_the_role_as_server_manager_does(
    conn: asyncssh.SSHClientConnection,
) -> None:
    r = await run(conn, "Get-WindowsFeature -Name Hyper-V")
    assert r.exit_status == 0 and r.stderr == ""
    row = "[ ] Hyper-V".ljust(56) + "Hyper-V".ljust(27) + "Available".rjust(13)
    assert r.stdout == TABLE_HEAD + row + CRLF + CRLF + CRLF
    r = await run(conn, STATE)
    assert (r.exit_status, r.stdout, r.stderr) == (0, "Available" + CRLF, "")


async def test_an_unknown_feature_name_answers_nothing(conn: asyncssh.SSHClientConnection) -> None:
    r = await run(conn, "(Get-WindowsFeature -Name 'Hyper-X').InstallState")
    assert (r.exit_status, r.stdout, r.stderr) == (0, "", "")


async def test_installing_hyperv_needs_the_reboot_windows_asks_for(
    conn: asyncssh.SSHClientConnection, host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    r = await run(conn, "Install-WindowsFeature -Name 'Hyper-V'")
    assert r.exit_status == 1 and "ReadConsoleOutput" in r.stderr  # progress bar without a console
    r = await run(conn, INSTALL)
    assert r.exit_status == 0 and r.stderr == ""
    assert r.stdout == (
        HEADER
        + "True    Yes            SuccessRest... {Hyper-V}"
        + CRLF
        + "WARNING: You must restart this server to finish the installation process."
        + CRLF
    )
    assert (await run(conn, STATE)).stdout == "InstallPending" + CRLF
    assert not host.machine.hyperv_running()
    r = await run(conn, INSTALL)  # again before the reboot: still pending, still "Yes"
    assert "True    Yes            SuccessRest... {Hyper-V}" in r.stdout
    await host.reboot()
    after = await connect(host, client_key)
    try:
        assert (await run(after, STATE)).stdout == "Installed" + CRLF
        r = await run(after, "Get-WindowsFeature -Name Hyper-V")
        assert "[X] Hyper-V".ljust(56) + "Hyper-V".ljust(27) + "Installed".rjust(13) in r.stdout
        r = await run(after, INSTALL)
        assert r.exit_status == 0
        assert r.stdout == HEADER + "True    No             NoChangeNeeded {}" + CRLF * 3
        assert host.machine.hyperv_running()
    finally:
        after.close()


async def test_dism_names_the_role_microsoft_hyper_v(conn: asyncssh.SSHClientConnection) -> None:
    r = await run(conn, "Get-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V")
    assert r.exit_status == 0
    assert "FeatureName      : Microsoft-Hyper-V" + CRLF in r.stdout
    assert "State            : Disabled" + CRLF in r.stdout
    r = await run(conn, "Get-WindowsOptionalFeature -Online -FeatureName Hyper-V")
    assert r.exit_status == 1 and r.stdout == ""
    assert flat(r.stderr).startswith(
        "Get-WindowsOptionalFeature : Feature name Hyper-V is unknown."
    )


async def test_without_nested_virtualisation_the_prerequisite_check_fails(
    nested_less: tuple[WindowsHost, asyncssh.SSHClientConnection],
) -> None:
    host, conn = nested_less
    assert (await run(conn, STATE)).stdout == "Available" + CRLF  # the query cannot tell
    r = await run(conn, INSTALL)
    assert r.exit_status == 1
    assert r.stdout == HEADER + "False   Maybe          Failed         {}" + CRLF * 3
    assert r.stderr.startswith(
        "Install-WindowsFeature : A prerequisite check for the Hyper-V feature failed."
        + CRLF
        + "1. Hyper-V cannot be installed: The processor does not have required virtualization "
        "capabilities." + CRLF + "At line:1 char:"
    )
    unwrapped = unwrap(r.stderr)
    assert (
        "    + CategoryInfo          : InvalidOperation: (Hyper-V:ServerComponentWrapper) "
        "[Install-WindowsFeature], Exception"
    ) in unwrapped
    assert (
        "    + FullyQualifiedErrorId : Alteration_PrerequisiteCheck_Failed,"
        "Microsoft.Windows.ServerManager.Commands.AddWindowsFeatureCommand"
    ) in unwrapped
    assert host.machine.features["hyper-v"] == "Disabled"
    await host.reboot()
    assert not host.machine.hyperv_running()


async def test_an_unknown_role_name_is_refused_by_install(
    conn: asyncssh.SSHClientConnection,
) -> None:
    r = await run(
        conn, "$ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name 'Hyper-X'"
    )
    assert r.exit_status == 1
    assert "NameDoesNotExist" in unwrap(r.stderr)


# --- containerd: a Hyper-V runtime needs the hypervisor -------------------------------------------

HYPERV_TOML = (
    WMCO_TOML
    + b"""
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runhcs-wcow-hypervisor-17763]
  runtime_type = "io.containerd.runhcs.v1"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runhcs-wcow-hypervisor-17763.options]
  SandboxIsolation = 1
  SandboxPlatform = "windows/amd64"
  ScaleCpuLimitsToSandbox = true
"""
)


def pod(name: str, handler: str) -> PodSandboxRequest:
    return PodSandboxRequest(
        namespace="default", name=name, uid=f"uid-{name}", runtime_handler=handler
    )


@pytest.mark.parametrize("hypervisor", [True, False], ids=["hyperv-enabled", "no-hyperv"])
async def test_a_sandbox_isolation_1_runtime_starts_pods_only_with_the_hypervisor(
    hypervisor: bool,
) -> None:
    machine = new_machine(config=HYPERV_TOML)
    machine.features["containers"] = "Enabled"
    if hypervisor:
        machine.features["hyper-v"] = "Enabled"
    make_overlay(machine)
    machine.disk.write_file(CNI_CONF, cni_conf())
    await start_containerd(machine)
    cri = machine.cri()
    assert cri is not None
    settings = machine.scm.require("containerd")
    assert settings.state.name == "RUNNING"
    process = await cri.run_pod_sandbox(pod("process", "runhcs-wcow-process"))
    assert process.ip.startswith("10.132.0.")
    for name, handler in (
        ("isolated", "runhcs-wcow-hypervisor-17763"),
        ("default", "runhcs-wcow-hypervisor"),
    ):
        if hypervisor:
            started = await cri.run_pod_sandbox(pod(name, handler))
            assert started.ip.startswith("10.132.0.")
            continue
        with pytest.raises(CriError) as refused:
            await cri.run_pod_sandbox(pod(name, handler))
        message = str(refused.value)
        assert message.startswith(
            "rpc error: code = Unknown desc = failed to create containerd task: failed to create "
            "shim task: hcs::CreateComputeSystem "
        )
        assert message.endswith(
            "@vm: The virtual machine could not be started because a required feature is not "
            "installed.: unknown"
        )
    assert machine.disk.read_file(CONF) == HYPERV_TOML
