"""Service control manager semantics through sc.exe, the Set/Start/Restart-Service cmdlets and reboots."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wmco_sandbox.winhost.core.processes import KubeletConfigError, KubeletEnvironment
from wmco_sandbox.winhost.core.scm import State
from wmco_sandbox.winhost.host import WindowsHost


class FakeKubelet:
    """Records what the SCM does with it."""

    instances: list[FakeKubelet] = []

    def __init__(self, argv: list[str], env: KubeletEnvironment, fail: bool = False) -> None:
        self.argv, self.env, self.fail = argv, env, fail
        self.started = self.stopped = False
        FakeKubelet.instances.append(self)

    async def start(self) -> None:
        if self.fail:
            raise KubeletConfigError("--config: C:\\k\\kubelet.conf not found")
        self.started = True
        self.env.log("kubelet started")

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
async def win() -> AsyncIterator[WindowsHost]:
    FakeKubelet.instances.clear()
    host = WindowsHost(kubelet_factory=lambda argv, env: FakeKubelet(argv, env))
    host.faults.reboot_unreachable = 0.01
    # These tests are about the SCM: "containerd" is any service here, not the simulated
    # containerd (tests/winhost/test_containerd.py covers that one).
    del host.machine.program_factories["containerd"]
    await host.boot(None)
    for exe in ("containerd.exe", "kubelet.exe", "kube-proxy.exe"):
        host.machine.disk.mkdir("C:\\k")
        host.machine.disk.write_file(f"C:\\k\\{exe}", b"MZ")
    yield host
    await host.stop()


async def ps(host: WindowsHost, command: str) -> tuple[int | None, str]:
    r = await host.run(command, shell="powershell")
    return r.code, r.stdout


async def test_create_query_qc_start_stop_delete(win: WindowsHost) -> None:
    code, out = await ps(
        win,
        "sc.exe create 'containerd' binPath= 'C:\\k\\containerd.exe --register-service' start= auto; exit $LASTEXITCODE",
    )
    assert (code, out) == (0, "[SC] CreateService SUCCESS\r\n")
    code, out = await ps(
        win, "sc.exe create containerd binPath= C:\\k\\containerd.exe; exit $LASTEXITCODE"
    )
    assert (
        code == 1073
        and out
        == "[SC] CreateService FAILED 1073:\r\n\r\nThe specified service already exists.\r\n\r\n"
    )
    code, out = await ps(win, "sc.exe qc containerd; exit $LASTEXITCODE")
    assert code == 0
    assert "        START_TYPE         : 2   AUTO_START\r\n" in out
    assert "        BINARY_PATH_NAME   : C:\\k\\containerd.exe --register-service\r\n" in out
    code, out = await ps(win, "sc.exe query containerd; exit $LASTEXITCODE")
    assert "STATE              : 1  STOPPED" in out and "WIN32_EXIT_CODE    : 1077  (0x435)" in out
    code, out = await ps(win, "sc.exe start containerd; exit $LASTEXITCODE")
    assert (
        code == 0
        and "STATE              : 2  START_PENDING" in out
        and "PID                : " in out
    )
    code, out = await ps(win, "sc.exe query containerd; exit $LASTEXITCODE")
    assert "STATE              : 4  RUNNING" in out
    code, out = await ps(win, "sc.exe start containerd; exit $LASTEXITCODE")
    assert code == 1056 and "[SC] StartService FAILED 1056:" in out
    code, out = await ps(win, "sc.exe stop containerd; exit $LASTEXITCODE")
    assert code == 0 and "STATE              : 3  STOP_PENDING" in out
    code, out = await ps(win, "sc.exe stop containerd; exit $LASTEXITCODE")
    assert code == 1062
    code, out = await ps(win, "sc.exe delete containerd; exit $LASTEXITCODE")
    assert (code, out) == (0, "[SC] DeleteService SUCCESS\r\n")
    for verb, api in (
        ("qc", "[SC] OpenService FAILED 1060:"),
        ("query", "[SC] EnumQueryServicesStatus:OpenService FAILED 1060:"),
        ("start", "[SC] StartService: OpenService FAILED 1060:"),
        ("delete", "[SC] OpenService FAILED 1060:"),
    ):
        code, out = await ps(win, f"sc.exe {verb} containerd; exit $LASTEXITCODE")
        assert code == 1060 and out.startswith(api)


async def test_config_description_failure(win: WindowsHost) -> None:
    await ps(win, "sc.exe create kubelet binPath= C:\\k\\kubelet.exe")
    code, out = await ps(
        win,
        "sc.exe config kubelet binPath= 'C:\\k\\kubelet.exe --v=2' start= auto depend= 'containerd/kube-proxy'; exit $LASTEXITCODE",
    )
    assert (code, out) == (0, "[SC] ChangeServiceConfig SUCCESS\r\n")
    svc = win.machine.scm.require("kubelet")
    assert svc.depend == ["containerd", "kube-proxy"] and svc.bin_path == "C:\\k\\kubelet.exe --v=2"
    code, out = await ps(win, "sc.exe qc kubelet; exit $LASTEXITCODE")
    assert "DEPENDENCIES       : containerd\r\n                           : kube-proxy\r\n" in out
    code, _ = await ps(win, "sc.exe config kubelet depend= /; exit $LASTEXITCODE")
    assert code == 0 and svc.depend == []
    code, out = await ps(
        win, "sc.exe description kubelet 'OpenShift managed kubelet'; exit $LASTEXITCODE"
    )
    assert (code, out) == (
        0,
        "[SC] ChangeServiceConfig2 SUCCESS\r\n",
    ) and svc.description == "OpenShift managed kubelet"
    code, out = await ps(
        win,
        "sc.exe failure kubelet reset= 86400 actions= restart/10000/restart/10000/restart/10000; exit $LASTEXITCODE",
    )
    assert code == 0 and svc.failure_actions == [("restart", 10000)] * 3
    code, out = await ps(win, "sc.exe failure kubelet reset= 86400; exit $LASTEXITCODE")
    assert code == 1639 and "must be set simultaneously" in out
    code, _ = await ps(win, "sc.exe config nosuch start= auto; exit $LASTEXITCODE")
    assert code == 1060
    code, _ = await ps(
        win, "sc.exe create x binPath= C:\\k\\x.exe start= sometimes; exit $LASTEXITCODE"
    )
    assert code == 1639


async def test_binary_missing_and_dependencies(win: WindowsHost) -> None:
    await ps(win, "sc.exe create ghost binPath= 'C:\\k\\ghost.exe --x' start= demand")
    code, out = await ps(win, "sc.exe start ghost; exit $LASTEXITCODE")
    assert code == 2 and "The system cannot find the file specified." in out
    await ps(win, "sc.exe create kubelet binPath= C:\\k\\kubelet.exe depend= containerd")
    code, _ = await ps(win, "sc.exe start kubelet; exit $LASTEXITCODE")
    assert code == 1075  # dependency does not exist
    await ps(win, "sc.exe create containerd binPath= C:\\k\\containerd.exe")
    code, _ = await ps(win, "sc.exe start kubelet; exit $LASTEXITCODE")
    assert code == 0
    assert win.machine.scm.running("containerd")  # started first
    code, out = await ps(win, "sc.exe stop containerd; exit $LASTEXITCODE")
    assert code == 1051 and "other running services are dependent on" in out
    code, _ = await ps(win, "Stop-Service -Name containerd")
    assert code == 1
    code, _ = await ps(win, "Stop-Service -Name containerd -Force")
    assert code == 0 and not win.machine.scm.running("kubelet")
    await ps(win, "sc.exe config containerd start= disabled")
    code, out = await ps(win, "sc.exe start containerd; exit $LASTEXITCODE")
    assert code == 1058
    code, _ = await ps(win, "sc.exe start kubelet; exit $LASTEXITCODE")
    assert code == 1068


async def test_delete_running_marks_for_deletion(win: WindowsHost) -> None:
    await ps(
        win, "sc.exe create containerd binPath= C:\\k\\containerd.exe; sc.exe start containerd"
    )
    code, _ = await ps(win, "sc.exe delete containerd; exit $LASTEXITCODE")
    assert code == 0
    code, _ = await ps(win, "sc.exe qc containerd; exit $LASTEXITCODE")
    assert code == 0
    code, out = await ps(win, "sc.exe delete containerd; exit $LASTEXITCODE")
    assert code == 1072 and "marked for deletion" in out
    code, _ = await ps(
        win, "sc.exe create containerd binPath= C:\\k\\containerd.exe; exit $LASTEXITCODE"
    )
    assert code == 1072
    await ps(win, "sc.exe stop containerd")
    code, _ = await ps(win, "sc.exe qc containerd; exit $LASTEXITCODE")
    assert code == 1060


async def test_failing_service_fault(win: WindowsHost) -> None:
    await ps(win, "sc.exe create containerd binPath= C:\\k\\containerd.exe")
    win.faults.failing_services.add("containerd")
    code, _ = await ps(win, "sc.exe start containerd; exit $LASTEXITCODE")
    assert code == 1053
    code, _ = await ps(win, "Start-Service -Name containerd")
    assert code == 1
    win.faults.failing_services.clear()
    code, _ = await ps(win, "Start-Service -Name containerd")
    assert code == 0


async def test_kubelet_hook_and_reboot_order(win: WindowsHost) -> None:
    await ps(win, "sc.exe create containerd binPath= C:\\k\\containerd.exe start= auto")
    await ps(
        win,
        'sc.exe create kubelet binPath= \'"C:\\k\\kubelet.exe" --config=C:\\k\\kubelet.conf --node-ip "10.0.0.5"\' start= auto depend= containerd',
    )
    code, _ = await ps(win, "sc.exe start kubelet; exit $LASTEXITCODE")
    assert code == 0
    kubelet = FakeKubelet.instances[-1]
    assert kubelet.argv == [
        "C:\\k\\kubelet.exe",
        "--config=C:\\k\\kubelet.conf",
        "--node-ip",
        "10.0.0.5",
    ]
    assert kubelet.started and kubelet.env.service_running("containerd")
    assert kubelet.env.facts.windows_build == "10.0.20348"
    assert win.kubelet_log == ["kubelet started"]
    code, out = await ps(win, "Get-Process -Name kubelet")
    assert code == 0 and " kubelet\r\n" in out
    await win.reboot()
    assert kubelet.stopped
    assert win.machine.scm.running("containerd") and win.machine.scm.running("kubelet")
    assert FakeKubelet.instances[-1] is not kubelet and FakeKubelet.instances[-1].started
    FakeKubelet.instances[-1].env.exited(1, "lost the API server")
    assert win.machine.scm.require("kubelet").state is State.STOPPED
    assert any("lost the API server" in line for line in win.log)


async def test_kubelet_config_error_stops_service(win: WindowsHost) -> None:
    win.machine.program_factories["kubelet"] = lambda argv, env: FakeKubelet(argv, env, fail=True)
    await ps(win, "sc.exe create kubelet binPath= C:\\k\\kubelet.exe")
    code, out = await ps(win, "sc.exe start kubelet; exit $LASTEXITCODE")
    assert code == 0  # sc.exe start returns at START_PENDING
    code, out = await ps(win, "sc.exe query kubelet; exit $LASTEXITCODE")
    assert "STOPPED" in out and "1067" in out
    assert any("kubelet.conf not found" in line for line in win.log)


async def test_service_cmdlets(win: WindowsHost) -> None:
    await ps(win, "sc.exe create containerd binPath= C:\\k\\containerd.exe")
    code, _ = await ps(win, "Set-Service -Name 'containerd' -StartupType 'Automatic'")
    assert code == 0 and win.machine.scm.require("containerd").start_type == "auto"
    code, _ = await ps(win, "Set-Service -Name 'containerd' -StartupType 'Sometimes'")
    assert code == 1
    code, _ = await ps(win, "Restart-Service -Name 'containerd'")
    assert code == 0 and win.machine.scm.running("containerd")
    code, out = await ps(win, "Get-Service -Name containerd")
    assert "Running  containerd" in out
    r = await win.run("Start-Service -Name nosuch", shell="powershell")
    assert r.code == 1 and "Cannot find any service with service name 'nosuch'." in r.stderr
