"""MLLP over asyncio: ``0x0B message 0x1C 0x0D`` frames, many messages per connection.

A protocol layer that does one thing: frames in, the handler's answer out. The handler (given by
the server) stores the message and returns the ACK; this module never decides AA/AE/AR except for
a frame it cannot even hand over (too large), where it asks ``on_oversize`` for the answer. Stray
bytes between frames are skipped; an idle connection is closed; a peer that vanishes mid-frame
loses nothing it was told was accepted. Not hl7apy's server: that closes after one message.

Memory per connection is bounded: a frame is at most ``max_frame`` bytes and, once begun, must
end within ``frame_timeout``; a peer that stops half way (or vanishes without closing, which TCP
keepalive then notices) is dropped with its buffer instead of holding it for the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fhir_engagement.errors import FramingError

__all__ = ["END", "START", "Handler", "MllpListener", "MllpSettings", "frame", "next_frame",
           "read_frame_body", "start_mllp_server"]

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
    frame_timeout: float = 60.0  # from a frame's start byte to its end


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
        _keepalive(writer)
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
            await asyncio.wait_for(_skip_to_start(reader), limits.idle_timeout)
            payload = await asyncio.wait_for(read_frame_body(reader, limits.max_frame),
                                             limits.frame_timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return  # idle, stalled or closed mid-frame: nothing was acknowledged, nothing lost
        except FramingError as big:
            answer = on_oversize(big.raw, limits.max_frame)
        else:
            answer = await handler(payload)
        writer.write(frame(answer))
        try:
            await writer.drain()
        except ConnectionError:
            return


def _keepalive(writer: asyncio.StreamWriter) -> None:
    """Let TCP notice a peer that vanished without closing, so its buffer is not kept for hours."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # Not a TCP socket (a Unix socket in tests): the timeouts still apply.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


async def next_frame(reader: asyncio.StreamReader, max_frame: int) -> bytes:
    """The next frame's payload; stray bytes before its start byte are dropped.

    Raises:
        FramingError: the frame is larger than ``max_frame``; ``raw`` holds its first 4 KB (MSH)
            and the reader is left at the next frame.
    """
    await _skip_to_start(reader)
    return await read_frame_body(reader, max_frame)


async def read_frame_body(reader: asyncio.StreamReader, max_frame: int) -> bytes:
    """The rest of a frame whose start byte was read (see ``next_frame``).

    The reader's own limit (``max_frame`` + 2 on the server) bounds what is buffered; the size is
    checked here as well, so the limit holds whatever reader is passed.
    """
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
        if oversize or len(data) - len(END) > max_frame:
            raise FramingError("MLLP frame", f"larger than {max_frame} bytes", head or data[:4096])
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
