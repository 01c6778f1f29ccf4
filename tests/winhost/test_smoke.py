import asyncssh

from wmco_sandbox.winhost.host import WindowsHost


async def test_smoke(host: WindowsHost, conn: asyncssh.SSHClientConnection) -> None:
    r = await conn.run("Get-Help", check=False)
    assert r.exit_status == 0, r.stderr
    r = await conn.run("sc.exe qc nosuch; exit $LASTEXITCODE", check=False)
    assert r.exit_status == 1060
    async with conn.start_sftp_client() as sftp:
        await sftp.makedirs("/C:/k")
        async with sftp.open("/C:/k/x.bin", "wb") as f:
            await f.write(b"hello")
        assert (await sftp.stat("C:\\k\\x.bin")).size == 5
        assert await sftp.realpath("c:/K/x.bin") == "/C:/k/x.bin"
