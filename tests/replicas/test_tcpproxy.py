"""The outage proxy itself: it forwards bytes both ways, cuts open connections, refuses new ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.replicas.tcpproxy import TcpProxy


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    """A real echo server on a loopback port: what the proxy stands in front of."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


@pytest.fixture
async def proxy(echo: int) -> AsyncIterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", echo)
    await p.start()
    yield p
    await p.close()


async def _round_trip(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readexactly(len(data)), 5)
    writer.close()
    return answer


async def test_bytes_go_through_both_ways(proxy: TcpProxy) -> None:
    big = bytes(range(256)) * 1000  # more than one read's worth
    assert await _round_trip(proxy.port, big) == big


async def test_an_outage_cuts_open_connections_refuses_new_ones_then_ends(proxy: TcpProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"before")
    assert await reader.readexactly(6) == b"before"
    async with proxy.outage():
        assert await asyncio.wait_for(reader.read(10), 5) == b""  # cut: end of stream, or reset
        new_reader, new_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await asyncio.wait_for(new_reader.read(10), 5) == b""  # closed on arrival
        new_writer.close()
    writer.close()
    assert proxy.refused == 1
    assert await _round_trip(proxy.port, b"after") == b"after"
