"""A TCP proxy between the replicas and PostgreSQL that can stage an outage.

The machine's PostgreSQL serves other work and is never stopped by the tests. What a stopped
database looks like to a client is reproduced here instead: ``outage()`` closes every proxied
connection (the server then ends those sessions, advisory locks included, as it does when a
client vanishes) and, until it ends, closes each new connection as soon as it is accepted, so
connecting fails at once. The listening socket stays bound throughout: no port to lose.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["TcpProxy"]

_CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``down`` while an outage is staged."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.down = False
        self.refused = 0  # connections closed on arrival during outages
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._drop_all()
            # Every connection's task ends before the loop does (its sockets were just reset).
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """The database unreachable for the ``async with`` block: open sessions cut, none new."""
        self.down = True
        self._drop_all()
        try:
            yield
        finally:
            self.down = False

    def _drop_all(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()  # a reset, not a polite close: what a dead host looks like
        self._open.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self.down:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for side in (writer, up_writer):
                self._open.discard(side)
                side.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until either side ends; a reset ends it quietly."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
