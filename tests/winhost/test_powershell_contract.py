"""Contract suite: every PowerShell form of docs/windows-surface.md through a real SSH client."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile

import asyncssh
import pytest

from wmco_sandbox.winhost.host import WindowsHost

CRLF = "\r\n"
QK = "'C:\\k'"
QN = "'C:\\nothing'"


def unwrap(stderr: str) -> str:
    """Undo the 5.1 hard wrap of CategoryInfo/FullyQualifiedErrorId lines."""
    return re.sub(r"\r\n   (?=\S)", "", stderr)


def q(value: str) -> str:
    """A single-quoted PowerShell literal, as the operator's command builder makes it."""
    return "'" + value.replace("'", "''") + "'"


async def run(conn: asyncssh.SSHClientConnection, command: str) -> asyncssh.SSHCompletedProcess:
    return await conn.run(command, check=False)


async def test_liveness_get_help(conn: asyncssh.SSHClientConnection) -> None:
    r = await run(conn, "Get-Help")
    assert r.exit_status == 0
    assert "Windows PowerShell Help System" in r.stdout
    assert r.stderr == ""


async def test_unknown_command_is_powershell_error(conn: asyncssh.SSHClientConnection) -> None:
    r = await run(conn, "nosuch-thing -x 1")
    assert r.exit_status == 1
    assert r.stdout == ""
    assert (
        r.stderr.replace(CRLF + "   ", "")
        .replace(CRLF, " ", 1)
        .startswith(
            "nosuch-thing : The term 'nosuch-thing' is not recognized as the name of a cmdlet, function, "
            "script file, or operable program."
        )
    )
    assert (
        "At line:1 char:1" + CRLF + "+ nosuch-thing -x 1" + CRLF + "+ ~~~~~~~~~~~~" + CRLF
        in r.stderr
    )
    assert (
        "    + CategoryInfo          : ObjectNotFound: (nosuch-thing:String) [], CommandNotFoundException"
        in r.stderr
    )
    assert r.stderr.endswith(
        "    + FullyQualifiedErrorId : CommandNotFoundException" + CRLF + " " + CRLF
    )


async def test_directory_forms(conn: asyncssh.SSHClientConnection) -> None:
    d = "C:\\k\\a dir\\it's"
    r = await run(conn, f"Test-Path -LiteralPath {q(d)}")
    assert (r.exit_status, r.stdout) == (0, "False" + CRLF)
    r = await run(conn, f"New-Item -ItemType Directory -Force -Path {q(d)} | Out-Null")
    assert (r.exit_status, r.stdout, r.stderr) == (0, "", "")
    r = await run(conn, f"New-Item -ItemType Directory -Force -Path {q(d)} | Out-Null")
    assert r.exit_status == 0  # -Force: existing directory is fine
    r = await run(conn, f"Test-Path -LiteralPath {q(d.upper())}")
    assert r.stdout == "True" + CRLF  # NTFS is case-insensitive
    r = await run(
        conn,
        f"if (Test-Path -LiteralPath {QK}) {{ Remove-Item -LiteralPath {QK} -Recurse -Force }}",
    )
    assert (r.exit_status, r.stdout, r.stderr) == (0, "", "")
    r = await run(conn, f"Test-Path -LiteralPath {q(d)}")
    assert r.stdout == "False" + CRLF
    r = await run(
        conn,
        f"if (Test-Path -LiteralPath {QN}) {{ Remove-Item -LiteralPath {QN} -Recurse -Force }}",
    )
    assert (r.exit_status, r.stderr) == (0, "")


async def test_new_item_without_force_on_existing_fails(conn: asyncssh.SSHClientConnection) -> None:
    await run(conn, "New-Item -ItemType Directory -Force -Path 'C:\\k' | Out-Null")
    r = await run(conn, "New-Item -ItemType Directory -Path 'C:\\k'")
    assert r.exit_status == 1
    assert "An item with the specified name C:\\k already exists." in r.stderr
    assert "DirectoryExist,Microsoft.PowerShell.Commands.NewItemCommand" in r.stderr


QUOTING_VALUES = [
    "plain",
    "with spaces  inside",
    "it's doubled",
    "''two''",
    'double "quotes"',
    "$env:USERNAME and $x",
    "back`tick `n not a newline",
    "semi; colon; Remove-Item C:\\",
    "pipe | Out-Null",
    "braces { } ( ) @( )",
    "trailing backslash\\",
    "#not a comment",
    "-NotAParameter",
    "unicode-free ascii ~!%^&*=+[]",
]


@pytest.mark.parametrize("value", QUOTING_VALUES)
async def test_quoting_arrives_literally(conn: asyncssh.SSHClientConnection, value: str) -> None:
    path = "C:\\k\\" + "f " + str(abs(hash(value)) % 1000) + "'s.txt"
    await run(conn, "New-Item -ItemType Directory -Force -Path 'C:\\k' | Out-Null")
    r = await run(
        conn, f"Set-Content -LiteralPath {q(path)} -Value {q(value)} -Encoding ascii -NoNewline"
    )
    assert (r.exit_status, r.stderr) == (0, "")
    async with conn.start_sftp_client() as sftp, sftp.open(path.replace("\\", "/"), "rb") as f:
        assert await f.read() == value.encode()
    r = await run(conn, f"(Get-FileHash -LiteralPath {q(path)} -Algorithm SHA256).Hash")
    assert r.stdout == hashlib.sha256(value.encode()).hexdigest().upper() + CRLF


async def test_file_hash_of_uploaded_file(conn: asyncssh.SSHClientConnection) -> None:
    payload = bytes(range(256)) * 100
    async with conn.start_sftp_client() as sftp:
        await sftp.makedirs("/C:/k")
        async with sftp.open("/C:/k/kubelet.exe", "wb") as f:
            await f.write(payload)
    r = await run(conn, "(Get-FileHash -LiteralPath 'C:\\k\\kubelet.exe' -Algorithm SHA256).Hash")
    assert r.exit_status == 0
    assert r.stdout == hashlib.sha256(payload).hexdigest().upper() + CRLF
    r = await run(conn, "Get-FileHash -LiteralPath 'C:\\k\\kubelet.exe' -Algorithm SHA256")
    lines = r.stdout.split(CRLF)
    assert lines[1].startswith("Algorithm       Hash") and lines[3].startswith("SHA256          ")


async def test_file_hash_missing_file(conn: asyncssh.SSHClientConnection) -> None:
    r = await run(conn, "(Get-FileHash -LiteralPath 'C:\\k\\nope.exe' -Algorithm SHA256).Hash")
    assert r.exit_status == 1
    assert r.stdout == ""
    assert "Cannot find path 'C:\\k\\nope.exe' because it does not exist." in r.stderr


def targz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def test_unpack_tar_gz(conn: asyncssh.SSHClientConnection) -> None:
    long_name = "sub/" + "n" * 120 + ".txt"
    archive = targz({"kubelet.exe": b"MZ" + b"x" * 5000, long_name: b"long"})
    async with conn.start_sftp_client() as sftp:
        await sftp.makedirs("/C:/k")
        async with sftp.open("C:\\k\\kubelet.exe.tar.gz", "wb") as f:
            await f.write(archive)
    r = await run(conn, "tar -xzf 'C:\\k\\kubelet.exe.tar.gz' -C 'C:\\k'; exit $LASTEXITCODE")
    assert (r.exit_status, r.stdout, r.stderr) == (0, "", "")
    r = await run(conn, "(Get-FileHash -LiteralPath 'C:\\k\\kubelet.exe' -Algorithm SHA256).Hash")
    assert r.stdout.strip() == hashlib.sha256(b"MZ" + b"x" * 5000).hexdigest().upper()
    member = q("C:\\k\\" + long_name.replace("/", "\\"))
    r = await run(conn, f"Test-Path -LiteralPath {member}")
    assert r.stdout == "True" + CRLF


async def test_unpack_errors(conn: asyncssh.SSHClientConnection) -> None:
    r = await run(conn, "tar -xzf 'C:\\k\\missing.tar.gz' -C 'C:\\Windows'; exit $LASTEXITCODE")
    assert r.exit_status == 1
    assert (
        r.stderr == "tar.exe: Error opening archive: Failed to open 'C:\\k\\missing.tar.gz'" + CRLF
    )
    async with conn.start_sftp_client() as sftp:
        await sftp.makedirs("/C:/k")
        async with sftp.open("/C:/k/bad.tar.gz", "wb") as f:
            await f.write(b"not an archive")
    r = await run(conn, "tar -xzf 'C:\\k\\bad.tar.gz' -C 'C:\\k'; exit $LASTEXITCODE")
    assert r.exit_status == 1 and r.stderr.startswith("tar.exe: ")
    r = await run(conn, "tar -xzf 'C:\\k\\bad.tar.gz' -C 'C:\\nodir'; exit $LASTEXITCODE")
    assert r.exit_status == 1 and "could not chdir" in r.stderr


async def test_write_small_file_exact_bytes(conn: asyncssh.SSHClientConnection) -> None:
    await run(conn, "New-Item -ItemType Directory -Force -Path 'C:\\k' | Out-Null")
    r = await run(conn, "Set-Content -LiteralPath 'C:\\k\\v.txt' -Value 'a', 'b' -Encoding ascii")
    assert r.exit_status == 0
    async with conn.start_sftp_client() as sftp, sftp.open("/C:/k/v.txt", "rb") as f:
        assert await f.read() == b"a\r\nb\r\n"
    r = await run(
        conn, "Set-Content -LiteralPath 'C:\\missing\\v.txt' -Value 'x' -Encoding ascii -NoNewline"
    )
    assert (
        r.exit_status == 1 and "Could not find a part of the path 'C:\\missing\\v.txt'." in r.stderr
    )


async def test_os_identity(conn: asyncssh.SSHClientConnection, host: WindowsHost) -> None:
    r = await run(
        conn,
        "(Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion').CurrentBuildNumber",
    )
    assert (r.exit_status, r.stdout) == (0, "20348" + CRLF)
    r = await run(conn, "(Get-CimInstance -ClassName Win32_OperatingSystem).Caption")
    assert r.stdout == "Microsoft Windows Server 2022 Datacenter" + CRLF
    r = await run(conn, "hostname")
    assert r.stdout == host.facts.hostname.upper() + CRLF
    r = await run(conn, "ipconfig /all")
    lines = r.stdout.split(CRLF)
    host_line = next(ln for ln in lines if ln.startswith("   Host Name"))
    assert host_line.index(":") == 37
    assert f"   IPv4 Address. . . . . . . . . . . : {host.address}(Preferred) " in lines


async def test_containers_feature_needs_reboot(
    conn: asyncssh.SSHClientConnection, host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    from winhost_helpers import connect

    r = await run(conn, "Get-WindowsOptionalFeature -Online -FeatureName Containers")
    assert "State            : Disabled" + CRLF in r.stdout
    r = await run(conn, "Install-WindowsFeature -Name Containers")
    assert r.exit_status == 1 and "ReadConsoleOutput" in r.stderr  # progress bar without a console
    r = await run(
        conn, "$ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name Containers"
    )
    assert r.exit_status == 0 and "True    Yes            SuccessRest... {Containers}" in r.stdout
    r = await run(conn, "Get-WindowsOptionalFeature -Online -FeatureName Containers")
    assert "Enabled" not in r.stdout and "EnablePending" in r.stdout
    await host.reboot()
    conn2 = await connect(host, client_key)
    r = await run(conn2, "Get-WindowsOptionalFeature -Online -FeatureName Containers")
    assert "State            : Enabled" + CRLF in r.stdout
    conn2.close()


async def test_get_process(conn: asyncssh.SSHClientConnection) -> None:
    r = await run(conn, "Get-Process -Name kubelet -ErrorAction SilentlyContinue")
    assert (r.stdout, r.stderr) == ("", "")
    assert r.exit_status == 1  # $? is False even when the error is silenced
    r = await run(conn, "Get-Process -Name sshd -ErrorAction SilentlyContinue")
    assert r.exit_status == 0 and " sshd" + CRLF in r.stdout and "ProcessName" in r.stdout
    r = await run(conn, "Get-Process | Where-Object Name -eq 'sshd'")
    assert " sshd" in r.stdout


@pytest.mark.parametrize(
    ("command", "fqid"),
    [
        (
            "Test-Path -Foo 'x'",
            "NamedParameterNotFound,Microsoft.PowerShell.Commands.TestPathCommand",
        ),
        ("Test-Path -P 'x'", "AmbiguousParameter,Microsoft.PowerShell.Commands.TestPathCommand"),
        ("Test-Path -LiteralPath", "MissingArgument,Microsoft.PowerShell.Commands.TestPathCommand"),
        (
            "Get-FileHash -LiteralPath 'x' -Algorithm MD6",
            "ParameterArgumentValidationError,Get-FileHash",
        ),
        (
            "Set-Content -LiteralPath 'x' -Value 'y' -Encoding latin9",
            "CannotConvertArgumentNoMessage,Microsoft.PowerShell.Commands.SetContentCommand",
        ),
        (
            "Test-Path -LiteralPath 'a' 'b'",
            "PositionalParameterNotFound,Microsoft.PowerShell.Commands.TestPathCommand",
        ),
        (
            "Remove-Item -Force -Force 'x'",
            "ParameterAlreadyBound,Microsoft.PowerShell.Commands.RemoveItemCommand",
        ),
        (
            "Test-Path -LiteralPath ''",
            "ParameterArgumentValidationErrorEmptyStringNotAllowed,Microsoft.PowerShell.Commands.TestPathCommand",
        ),
    ],
)
async def test_parameter_binding_errors(
    conn: asyncssh.SSHClientConnection, command: str, fqid: str
) -> None:
    r = await run(conn, command)
    assert r.exit_status == 1
    assert f"    + FullyQualifiedErrorId : {fqid}" in unwrap(r.stderr)


@pytest.mark.parametrize(
    ("command", "status", "stdout"),
    [
        ("exit 3221225477", 3221225477, ""),
        ("exit 1060", 1060, ""),
        ("Remove-Item -LiteralPath 'C:\\nosuch'; Write-Output 'x'", 0, "x" + CRLF),
        ("Write-Output 'x'; Remove-Item -LiteralPath 'C:\\nosuch'", 1, "x" + CRLF),
        (
            "$ErrorActionPreference = 'Stop'; Remove-Item -LiteralPath 'C:\\nosuch'; Write-Output 'x'",
            1,
            "",
        ),
        ("Remove-Item -LiteralPath 'C:\\nosuch' -ErrorAction Stop; Write-Output 'x'", 1, ""),
        ("sc.exe qc nosuch | Out-Null", 1, ""),
        ("sc.exe qc nosuch > $null; exit $LASTEXITCODE", 1060, ""),
        ("exit $LASTEXITCODE", 0, ""),
        ("if ($?) { Write-Output 'ok' }", 0, "ok" + CRLF),
        ("Test-Path -LiteralPath 'C:\\nope'", 0, "False" + CRLF),
        ("'unterminated", 1, ""),
        ("if (Test-Path -LiteralPath 'C:\\') { exit 7 }", 7, ""),
        ("$x = 'a b'; Write-Output \"[$x] `$x ``\"", 0, "[a b] $x `" + CRLF),
    ],
)
async def test_exit_status_rules(
    conn: asyncssh.SSHClientConnection, command: str, status: int, stdout: str
) -> None:
    r = await run(conn, command)
    assert r.exit_status == status, r.stderr
    assert r.stdout == stdout


async def test_sc_in_powershell_is_set_content(
    conn: asyncssh.SSHClientConnection, host: WindowsHost
) -> None:
    r = await run(conn, "sc qc sshd")
    assert r.exit_status == 0 and r.stdout == ""
    assert host.machine.disk.read_file("C:\\Users\\Administrator\\qc") == b"sshd\r\n"


async def test_stop_parsing_token(conn: asyncssh.SSHClientConnection, host: WindowsHost) -> None:
    r = await run(
        conn, 'sc.exe --% create svc1 binPath= "C:\\Program Files\\x.exe --a" start= demand; exit 5'
    )
    assert r.exit_status == 1  # "; exit 5" went to sc.exe (usage error 1639, squashed to 1)
    assert "USAGE:" in r.stdout
    assert host.machine.scm.get("svc1") is None


async def test_containment_operators_answer_one_bool(conn: asyncssh.SSHClientConnection) -> None:
    # The scripts' exit-code checks: `if (@(0, 1073) -notcontains $LASTEXITCODE) { exit ... }`.
    cases = {
        "@(0, 1073) -contains 1073": "True",
        "@(0, 1073) -notcontains 1073": "False",
        "@(0, 1073) -notcontains 5": "True",
        "@('a', 'B') -contains 'b'": "True",
        "'b' -in @('a', 'B')": "True",
        "3 -notin @(1, 2)": "True",
        "@() -contains 1": "False",
    }
    for expression, expected in cases.items():
        r = await run(conn, expression)
        assert (r.exit_status, r.stdout) == (0, expected + CRLF), expression
    r = await run(
        conn, "sc.exe query 'nosuch'; if (@(0) -notcontains $LASTEXITCODE) { exit $LASTEXITCODE }"
    )
    assert r.exit_status == 1060
