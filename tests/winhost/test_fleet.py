"""Fifty hosts at once: all reachable, memory per host bounded, nothing listening after stop."""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc

import asyncssh
import pytest
from winhost_helpers import connect

from wmco_sandbox.winhost.fleet import WindowsHostFleet


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_fifty_hosts(
    client_key: asyncssh.SSHKey, user_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gc.collect()
    rss_before = rss_bytes()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fleet = WindowsHostFleet(50, user_data=user_data, sink_threshold=64 * 1024)
    async with fleet:
        gc.collect()
        per_host = (tracemalloc.get_traced_memory()[0] - before) / len(fleet)
        tracemalloc.stop()
        rss_per_host = (rss_bytes() - rss_before) / len(fleet)
        with capsys.disabled():
            print(
                f"\nsimulated Windows host: {per_host / 1024:.0f} KiB per booted host (tracemalloc); "
                f"RSS delta {rss_per_host / 1024:.0f} KiB per host (includes tracemalloc overhead)"
            )
        assert per_host < 2 * 1024 * 1024
        assert len({h.address for h in fleet.hosts}) == 50

        async def probe(i: int) -> int | None:
            conn = await connect(fleet[i], client_key)
            r = await conn.run("hostname", check=False)
            conn.close()
            await conn.wait_closed()
            assert r.stdout.strip() == fleet[i].facts.hostname.upper()
            return r.exit_status

        assert await asyncio.gather(*(probe(i) for i in range(50))) == [0] * 50
    for h in fleet.hosts:
        assert not h.listening
    with pytest.raises(OSError):
        await connect(fleet[0], client_key)
