"""The MLLP listener on a real loopback socket, with a real SQLite file behind it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.ingest.mllp import END, START
from fhir_engagement.live.app import MLLP_SERVER, PIPELINE, build_app
from fhir_engagement.live.v2_inbox import V2Inbox
from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.store import SqliteStore
from tests.conftest import MAPPINGS, RefusingStore
from tests.hl7v2.messages import adt, nhs_number, siu


@dataclass
class Listener:
    port: int
    pipeline: Pipeline
    store: RefusingStore  # a real SqliteStore that a test can make refuse writes


async def _start(tmp_path: Path, engine: Engine, **limits: object) -> tuple[web.AppRunner, Listener]:
    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "state.sqlite3"), mllp_port=0,
                        **limits)
    store = RefusingStore(SqliteStore(settings.store))
    app = build_app(settings, engine, store)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    port = app[MLLP_SERVER].port
    return runner, Listener(port, app[PIPELINE], store)


@pytest.fixture
async def listener(tmp_path: Path, engine: Engine) -> AsyncIterator[Listener]:
    runner, running = await _start(tmp_path, engine, mllp_max_frame=16384)
    yield running
    await runner.cleanup()
    running.store.close()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, raw: bytes, prefix: bytes = b"") -> list[str]:
        self.writer.write(prefix + START + raw + END)
        await self.writer.drain()
        return await self.ack()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def ack(self) -> list[str]:
        data = await asyncio.wait_for(self.reader.readuntil(END), 5)
        msa = next(s for s in data.strip(START + END).split(b"\r") if s.startswith(b"MSA"))
        return msa.decode().split("|")


async def _connect(port: int) -> Client:
    return Client(*await asyncio.open_connection("127.0.0.1", port))


async def _drained(store: SqliteStore) -> None:
    for _ in range(200):  # bounded: at most 10 s
        if not store.inbox_pending(1):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the inbox was not drained within 10 s")


def _mix(count: int) -> list[bytes]:
    """Mostly ADT updates the adapter ignores; every tenth an SIU^S26 for a different child."""
    out = []
    for i in range(count):
        nhs = nhs_number(1000 + i)
        if i % 10 == 0:
            out.append(siu("S26", f"c{i}", f"A{i}", "20260302100000", nhs))
        else:
            out.append(adt("A08", f"c{i}", f"V{i}", "20260302100000", nhs))
    return out


async def test_1000_messages_on_one_connection_all_acked_none_lost_duplicates_suppressed(
    listener: Listener,
) -> None:
    client = await _connect(listener.port)
    messages = _mix(1000)
    for i, raw in enumerate(messages):
        assert (await client.send(raw))[1:3] == ["AA", f"c{i}"]
    for raw in messages[:50]:  # the sender re-sends: acknowledged again, not processed twice
        assert (await client.send(raw))[1] == "AA"
    await _drained(listener.store)
    stats = listener.pipeline.stats
    assert stats["received"] == 1000
    assert stats["duplicates"] == 50
    assert stats["signal not-brought"] == 100
    assert stats["task review-impact"] == 100
    await client.close()


async def test_malformed_frames_get_ae_and_the_connection_goes_on(listener: Listener) -> None:
    client = await _connect(listener.port)
    garbage = await client.send(b"this is not HL7")
    assert garbage[1] == "AE"
    no_pid = await client.send(b"MSH|^~\\&|PAS|RXQ|X|Y|20260304||SIU^S26|b1|P|2.5\rSCH|1|2\r")
    assert no_pid[1:3] == ["AE", "b1"]
    big = siu("S26", "big1", "A1", "20260302100000", nhs_number(5)) + b"NTE|1||" + b"x" * 40000
    assert (await client.send(big))[1:3] == ["AE", "big1"]
    after_junk = await client.send(siu("S26", "ok1", "A2", "20260302100000", nhs_number(6)),
                                   prefix=b"\r\n stray bytes \x1c\r")
    assert after_junk[1:3] == ["AA", "ok1"]
    await client.close()
    reasons = [reason for _, reason, _ in listener.store.dead_letters()]
    assert reasons == ["a message must start with an MSH segment",
                       "no PID segment: the message names no patient",
                       "larger than the 16,384-byte limit"]


async def test_a_peer_that_vanishes_mid_frame_does_not_hang_the_listener(
    listener: Listener,
) -> None:
    first = await _connect(listener.port)
    first.writer.write(START + b"MSH|^~\\&|PAS|RXQ|X|Y|2026||SIU^S26|half")
    await first.writer.drain()
    await first.close()
    second = await _connect(listener.port)
    ack = await second.send(siu("S26", "next", "A3", "20260302100000", nhs_number(7)))
    assert ack[1:3] == ["AA", "next"]
    await second.close()


async def test_store_unavailable_gets_ar_so_the_sender_keeps_the_message(
    listener: Listener,
) -> None:
    client = await _connect(listener.port)
    listener.store.refusing = True  # the database refuses every write
    refused = await client.send(siu("S26", "r1", "A4", "20260302100000", nhs_number(8)))
    assert refused[1:3] == ["AR", "r1"]
    listener.store.refusing = False
    assert (await client.send(siu("S26", "r1", "A4", "20260302100000", nhs_number(8))))[1] == "AA"
    await client.close()


async def test_acknowledged_messages_survive_a_restart(tmp_path: Path, engine: Engine) -> None:
    store = SqliteStore(str(tmp_path / "state.sqlite3"))
    inbox = V2Inbox(Pipeline(engine, store, store.start_run("before the crash")))
    for i in range(5):
        ack, fresh = await inbox.accept(siu("S26", f"k{i}", f"A{i}", "20260302100000",
                                            nhs_number(300 + i)), "mllp")
        assert fresh
        assert b"MSA|AA|" in ack
    store.close()  # stopped before the worker ran: the five are only in the inbox
    runner, running = await _start(tmp_path, engine)
    try:
        await _drained(running.store)
        assert running.pipeline.stats["signal not-brought"] == 5
    finally:
        await runner.cleanup()
        running.store.close()
