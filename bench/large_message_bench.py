"""One large HL7 v2 message must not hold the other MLLP connections (issue: reliability).

``fhir-engagement serve`` runs in its own process with MLLP on. One connection sends ``--large``
SIU^S26 messages of 32,000 PID-3 repetitions (~290 KB each, the shape that froze the event loop
for 34-98 s); another sends small no-shows one at a time and times each ACK. Printed: the small
messages' ACK latency (p50, p99, max) while the large ones go through, and alone for comparison.
Goal: no small message waits more than 100 ms behind a large one.

Run from the repository root:  .venv/bin/python bench/large_message_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START, END = b"\x0b", b"\x1c\x0d"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _siu(control: str, repetitions: int = 1) -> bytes:
    pid3 = "~".join(f"L{n:06d}^^^RXQ^MR" for n in range(repetitions))
    return ("\r".join([
        f"MSH|^~\\&|PAS|RXQ|FHIR-ENGAGEMENT|HSCP|20260504100000||SIU^S26^SIU_S12|{control}|P|2.5.1",
        "SCH|P1|F1|||||||60|MIN|^^60^20260504100000^20260504100000",
        f"PID|1||9990000018^^^NHS^NH~{pid3}||Test^Child||20150601|F",
        "AIS|1||PAEDS^Paediatric outpatients^L"]) + "\r").encode()


async def _ack(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> float:
    began = time.perf_counter()
    writer.write(START + raw + END)
    await writer.drain()
    await reader.readuntil(END)
    return time.perf_counter() - began


async def _small(port: int, stop: asyncio.Event, prefix: str) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    waits, n = [], 0
    while not stop.is_set():
        n += 1
        waits.append(await _ack(reader, writer, _siu(f"{prefix}{n}")))
    writer.close()
    return waits


async def _run(port: int, large: int) -> tuple[list[float], list[float]]:
    stop = asyncio.Event()
    alone = asyncio.create_task(_small(port, stop, "A"))
    await asyncio.sleep(2)
    stop.set()
    quiet = await alone
    stop = asyncio.Event()
    busy = asyncio.create_task(_small(port, stop, "B"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for n in range(large):
        await _ack(reader, writer, _siu(f"BIG{n}", 32_000))
    stop.set()
    return quiet, await busy


def _line(name: str, waits: list[float]) -> str:
    ms = sorted(w * 1000 for w in waits)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"{name:<28} {len(ms):6,} ACKs  p50 {statistics.median(ms):7.2f} ms  "
            f"p99 {p99:7.2f} ms  max {ms[-1]:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--large", type=int, default=20, help="large messages to send")
    args = parser.parse_args()
    print(f"one large message: {len(_siu('X', 32_000)):,} bytes")
    with tempfile.TemporaryDirectory() as tmp:
        mllp, http = _free_port(), _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "fhir_engagement", "serve", "--port", str(http), "--mllp-port",
             str(mllp), "--store", str(Path(tmp) / "s.sqlite3")], stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", mllp), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            quiet, busy = asyncio.run(_run(mllp, args.large))
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(_line("small messages alone", quiet))
    print(_line(f"beside {args.large} large messages", busy))


if __name__ == "__main__":
    main()
