"""Many hosts at once: start, boot and stop a fleet with one ``async with``.

Each host gets its own loopback address and host key; booting and stopping run concurrently.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from wmco_sandbox.winhost.host import WindowsHost

__all__ = ["WindowsHostFleet"]


class WindowsHostFleet:
    """A group of hosts sharing construction options.

    Args:
        count: Number of hosts to create.
        user_data: User data given to every host at boot (None = boot without).
        **host_options: Keyword arguments for each :class:`WindowsHost`.
    """

    def __init__(self, count: int, *, user_data: str | None = None, **host_options: Any) -> None:
        self.hosts = [WindowsHost(**host_options) for _ in range(count)]
        self.user_data = user_data

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, index: int) -> WindowsHost:
        return self.hosts[index]

    async def start(self) -> None:
        """Boot every host concurrently."""
        await asyncio.gather(*(h.boot(self.user_data) for h in self.hosts))

    async def stop(self) -> None:
        """Stop every host; nothing stays listening."""
        await asyncio.gather(*(h.stop() for h in self.hosts))

    async def __aenter__(self) -> WindowsHostFleet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
