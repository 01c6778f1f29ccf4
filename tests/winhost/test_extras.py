"""Forms beyond the operator's table that the user data or WMCO-style clients use."""

from __future__ import annotations

import base64

import asyncssh

from wmco_sandbox.winhost.host import WindowsHost

FQDN = (
    "$output = Invoke-Expression 'ipconfig /all'; "
    "$hostNameLine = ($output -split '`n') | Where-Object { $_ -match 'Host Name' }; "
    "$dnsSuffixLine = ($output -split '`n') | Where-Object { $_ -match 'Primary Dns Suffix' }; "
    "$hostName = ($hostNameLine -split ':')[1].Trim(); "
    "$dnsSuffix = ($dnsSuffixLine -split ':')[1].Trim(); "
    "if (-not $dnsSuffix) { return $hostName }; "
    "$fqdn = $hostName + '.' + $dnsSuffix; return $fqdn"
)


async def test_wmco_fqdn_script(conn: asyncssh.SSHClientConnection, host: WindowsHost) -> None:
    r = await conn.run(FQDN, check=False)
    assert (r.exit_status, r.stdout) == (0, host.facts.hostname.upper() + "\r\n")


async def test_child_items_piped_to_remove(
    conn: asyncssh.SSHClientConnection, host: WindowsHost
) -> None:
    disk = host.machine.disk
    disk.mkdir("C:\\k\\cni")
    for name in ("wicd.exe", "wicd-kubeconfig", "kubelet.exe", "cni\\x.conf"):
        disk.write_file("C:\\k\\" + name, b"x")
    r = await conn.run(
        "if(Test-Path C:\\k) {Get-ChildItem C:\\k -Recurse -Exclude wicd.exe,wicd-kubeconfig | Remove-Item -Force -Recurse}",
        check=False,
    )
    assert r.exit_status == 0, r.stderr
    assert (
        disk.get("C:\\k\\wicd.exe") is not None and disk.get("C:\\k\\wicd-kubeconfig") is not None
    )
    assert disk.get("C:\\k\\kubelet.exe") is None and disk.get("C:\\k\\cni") is None


async def test_rename_computer_applies_at_reboot(
    conn: asyncssh.SSHClientConnection, host: WindowsHost
) -> None:
    old = host.machine.computer_name
    r = await conn.run("Rename-Computer -NewName 'NEWNAME' -Force; hostname", check=False)
    assert (
        r.stdout
        == f"WARNING: The changes will take effect after you restart the computer {old}.\r\n{old}\r\n"
    )
    await host.reboot()
    r2 = await host.run("hostname")
    assert r2.stdout == "NEWNAME\r\n"


async def test_write_output_and_expansion(conn: asyncssh.SSHClientConnection) -> None:
    r = await conn.run(
        "$n = 'x'; Write-Output \"a`tb\" 'c' 42 $true \"$n$($n + 'y')\"", check=False
    )
    assert r.stdout == "a\tb\r\nc\r\n42\r\nTrue\r\nxxy\r\n"


async def test_encoded_command_from_cmd(host: WindowsHost) -> None:
    encoded = base64.b64encode("Write-Output 'enc'".encode("utf-16-le")).decode()
    r = await host.run(f"powershell.exe -NoProfile -EncodedCommand {encoded}", shell="cmd")
    assert (r.code, r.stdout) == (0, "enc\r\n")


async def test_icacls_output(host: WindowsHost) -> None:
    r = await host.run(
        "icacls.exe 'C:\\nope' /grant 'SYSTEM:F'; exit $LASTEXITCODE", shell="powershell"
    )
    assert r.code == 2 and "Failed processing 1 files" in r.stdout
    r = await host.run(
        "icacls.exe 'C:\\ProgramData\\ssh\\administrators_authorized_keys' /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'",
        shell="powershell",
    )
    assert r.code == 0 and r.stdout.startswith(
        "processed file: C:\\ProgramData\\ssh\\administrators_authorized_keys\r\n"
    )


async def test_kubelet_recovery_restart(host: WindowsHost) -> None:
    started: list[int] = []

    class Proc:
        def __init__(self, argv: list[str], env: object) -> None:
            self.env = env

        async def start(self) -> None:
            started.append(1)

        async def stop(self) -> None:
            pass

    host.machine.program_factories["kubelet"] = Proc  # type: ignore[assignment]
    host.machine.disk.mkdir("C:\\k")
    host.machine.disk.write_file("C:\\k\\kubelet.exe", b"MZ")
    await host.run(
        "sc.exe create kubelet binPath= C:\\k\\kubelet.exe; sc.exe failure kubelet reset= 86400 actions= restart/10; sc.exe start kubelet"
    )
    assert started == [1]
    host.machine.scm.process_exited("kubelet", 1, "crash")
    from winhost_helpers import wait_for

    await wait_for(lambda: host.machine.scm.running("kubelet"))
    assert started == [1, 1]
