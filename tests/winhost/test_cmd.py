"""cmd.exe forms (hosts whose DefaultShell is not set) and shells starting each other."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wmco_sandbox.winhost.host import WindowsHost


@pytest.fixture
async def machine_host() -> AsyncIterator[WindowsHost]:
    host = WindowsHost(image="2022")
    await host.boot(None)
    yield host
    await host.stop()


async def test_mkdir_forms(machine_host: WindowsHost) -> None:
    for _ in range(2):
        r = await machine_host.run("if not exist C:\\k\\ mkdir C:\\k\\ ", shell="cmd")
        assert (r.code, r.stdout, r.stderr) == (0, "", "")
    assert machine_host.machine.disk.get("C:\\k") is not None
    r = await machine_host.run("mkdir C:\\k", shell="cmd")
    assert (r.code, r.stderr) == (1, "A subdirectory or file C:\\k already exists.\r\n")
    r = await machine_host.run("mkdir C:\\var\\log\\kubelet", shell="cmd")
    assert r.code == 0 and machine_host.machine.disk.get("C:\\var\\log") is not None


async def test_cmd_natives_and_unknown(machine_host: WindowsHost) -> None:
    r = await machine_host.run("hostname", shell="cmd")
    assert r.stdout == machine_host.facts.hostname.upper() + "\r\n"
    r = await machine_host.run("sc qc nosuch", shell="cmd")
    assert r.code == 1060 and "[SC] OpenService FAILED 1060:" in r.stdout
    r = await machine_host.run("nosuch /x", shell="cmd")
    assert r.code == 1 and r.stderr.startswith("'nosuch' is not recognized")
    r = await machine_host.run("ipconfig /all", shell="cmd")
    assert "Windows IP Configuration" in r.stdout
    r = await machine_host.run("exit 5 & hostname", shell="cmd")
    assert r.code == 0
    r = await machine_host.run("sc.exe qc nosuch && hostname", shell="cmd")
    assert r.code == 1060 and machine_host.facts.hostname.upper() not in r.stdout


async def test_powershell_from_cmd_and_cmd_from_powershell(machine_host: WindowsHost) -> None:
    r = await machine_host.run(
        "powershell.exe -NonInteractive -ExecutionPolicy Bypass \"Test-Path -LiteralPath 'C:\\Windows'\"",
        shell="cmd",
    )
    assert (r.code, r.stdout) == (0, "True\r\n")
    r = await machine_host.run("cmd /c if not exist C:\\k\\ mkdir C:\\k\\ ", shell="powershell")
    assert r.code == 0 and machine_host.machine.disk.get("C:\\k") is not None
    r = await machine_host.run("cmd /c sc.exe qc nosuch; exit $LASTEXITCODE", shell="powershell")
    assert r.code == 1060
