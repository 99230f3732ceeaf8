"""MLLP over asyncio: ``0x0B message 0x1C 0x0D`` frames, many messages per connection.

A protocol layer that does one thing: frames in, the handler's answer out. The handler (given by
the server) stores the message and returns the ACK; this module never decides AA/AE/AR except for
a frame it cannot even hand over (too large), where it asks ``on_oversize`` for the answer. Stray
bytes between frames are skipped; an idle connection is closed; a peer that vanishes mid-frame
loses nothing it was told was accepted. Not hl7apy's server: that closes after one message.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["END", "START", "Handler", "MllpListener", "MllpSettings", "frame", "start_mllp_server"]

START = b"\x0b"
END = b"\x1c\x0d"

Handler = Callable[[bytes], Awaitable[bytes]]
OversizeHandler = Callable[[bytes, int], bytes]


@dataclass(frozen=True, slots=True)
class MllpSettings:
    """Limits for one listener."""

    max_frame: int = 1_048_576
    idle_timeout: float = 300.0
    tls: ssl.SSLContext | None = None


def frame(payload: bytes) -> bytes:
    """Wrap one message (or ACK) for the wire."""
    return START + payload + END


class MllpListener:
    """A listening MLLP server and its open connections, closed together on shutdown."""

    def __init__(
        self, server: asyncio.Server, connections: dict[asyncio.Task[None], asyncio.StreamWriter]
    ) -> None:
        self.server = server
        self._connections = connections

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self, grace: float = 5.0) -> None:
        """Stop listening, close every connection (an ACK being written is finished first)."""
        self.server.close()
        for writer in self._connections.values():
            writer.close()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=grace)
        await self.server.wait_closed()


async def start_mllp_server(
    handler: Handler, on_oversize: OversizeHandler, host: str, port: int, limits: MllpSettings
) -> MllpListener:
    """Listen; each connection is served until the peer closes it or stays idle too long."""
    connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            connections[task] = writer
        try:
            await _serve(reader, writer, handler, on_oversize, limits)
        finally:
            connections.pop(task, None)  # type: ignore[arg-type]
            writer.close()

    # The reader's limit bounds one frame: readuntil raises LimitOverrunError past it.
    server = await asyncio.start_server(connected, host, port, limit=limits.max_frame + len(END),
                                        ssl=limits.tls)
    return MllpListener(server, connections)


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler,
    on_oversize: OversizeHandler, limits: MllpSettings,
) -> None:
    while True:
        try:
            payload = await asyncio.wait_for(_next_frame(reader, limits.max_frame),
                                             limits.idle_timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return  # idle, or the peer closed (mid-frame: nothing was acknowledged, nothing lost)
        except _Oversize as big:
            answer = on_oversize(big.head, limits.max_frame)
        else:
            answer = await handler(payload)
        writer.write(frame(answer))
        try:
            await writer.drain()
        except ConnectionError:
            return


class _Oversize(Exception):  # noqa: N818 - internal control flow, never leaves this module
    def __init__(self, head: bytes) -> None:
        super().__init__("frame too large")
        self.head = head


async def _next_frame(reader: asyncio.StreamReader, max_frame: int) -> bytes:
    """The next frame's payload; stray bytes before its start byte are dropped."""
    await _skip_to_start(reader)
    head = b""
    oversize = False
    while True:
        try:
            data = await reader.readuntil(END)
        except asyncio.LimitOverrunError as exc:
            # Past the limit: drop what is buffered (keeping the head, where MSH is) and go on
            # to this frame's end, never past it, so the next frame is intact.
            chunk = await reader.readexactly(exc.consumed)
            head = head or chunk[:4096]
            oversize = True
            continue
        if oversize:
            raise _Oversize(head)
        payload = data[: -len(END)]
        # A start byte inside means the sender abandoned a frame and began again: keep the last.
        return payload.rsplit(START, 1)[-1]


async def _skip_to_start(reader: asyncio.StreamReader) -> None:
    while True:
        try:
            await reader.readuntil(START)
            return
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)  # a long run of junk: drop it and look again
