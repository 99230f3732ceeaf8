"""HL7 v2 throughput: replay of a v2 archive, and MLLP ingest over loopback, in messages/s.

The mix is what a PAS feed looks like: mostly ADT updates the adapter ignores (A08, A01, A02,
each 1-3 KB with NK1/PV2/OBX/AL1/Z segments), 10% SIU (S12/S14/S26), 6% ADT^A03 discharges and 4%
ADT^A04 emergency attendances. Goal (issue 4): >= 2,000 messages/s on one core, for both.

* replay: the messages written as .hl7 files (1,000 a file), replayed in-process into a fresh
  SQLite store, as ``fhir-engagement replay`` does;
* MLLP: ``fhir-engagement serve --mllp-port`` in its own process (the server's core); this
  process is the sender, on one connection, sending each message when the previous one is ACKed
  (the way an interface engine sends). Reported: ACKed messages/s, p50/p99 ACK latency, and the
  time until the inbox worker has processed everything.

Run from the repository root:  .venv/bin/python bench/v2_bench.py --n 20000
"""

from __future__ import annotations

import argparse
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fhir_engagement.config import Settings
from fhir_engagement.pipeline import load_engine
from fhir_engagement.replay import replay
from fhir_engagement.store import open_store
from listener_bench import cpu_seconds

START, END = b"\x0b", b"\x1c\r"
SEED = 4


def _nhs(seed: int) -> str:
    while True:
        base = f"999{seed % 1_000_000:06d}"
        check = (11 - sum(int(d) * w for d, w in zip(base, range(10, 1, -1), strict=True)) % 11) % 11
        if check != 10:
            return base + str(check)
        seed += 1


def _padding(rng: random.Random) -> list[str]:
    """What makes real ADT messages 1-3 KB: next of kin, visit detail, observations, allergies."""
    segs = [f"NK1|1|Parent^Pat^^^^|MTH|{rng.randint(1, 99)} High Street^^Winchester^^SO23 8UJ||"
            "01962 000000|||||||||||||||||||||||||||||"]
    segs.append("PV2|||^Routine review|||||20260302||||||||||||||N|||||||||||||||||||")
    for i in range(rng.randint(2, 12)):
        segs.append(f"OBX|{i + 1}|ST|8302-2^Body height^LN||{rng.randint(50, 180)}|cm|||||F")
    segs.append("AL1|1|DA|^Penicillin|MO|Rash")
    segs.append(f"ZU1|||||||16||||||03A|1|||{'x' * rng.randint(10, 200)}")
    return segs


def _message(i: int, rng: random.Random) -> bytes:
    nhs = _nhs(rng.randint(0, 20000))
    day = f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(8, 17):02d}0000"
    birth = f"{rng.randint(2008, 2025)}0{rng.randint(1, 9)}15"
    pid = f"PID|1||{nhs}^^^NHS^NH~{i}^^^RXQ^MR||Child^Test^^^||{birth}|F|||1 Road^^Town^^SO1 1AA"
    roll = rng.random()
    if roll < 0.10:
        trigger = rng.choice(["S12", "S14", "S26", "S26"])
        status = "Noshow" if trigger == "S14" and rng.random() < 0.3 else "Booked"
        sch = ["SCH", f"P{i}", f"F{i}", "", "", "", "", "", "", "30", "MIN", f"^^30^{day}^{day}"]
        segs = [f"MSH|^~\\&|PAS|RXQ|FE|HSCP|{day}||SIU^{trigger}^SIU_S12|m{i}|P|2.5.1",
                "|".join(sch + [""] * 13 + [status]), f"TQ1|||||||{day}|{day}", pid, "RGS|1",
                "AIS|1||PAEDS^Paediatrics^L", "AIP|1||C123^Doc^Alex"]
    else:
        trigger = "A03" if roll < 0.16 else "A04" if roll < 0.20 else rng.choice(
            ["A08", "A08", "A08", "A01", "A02"])
        klass = "E" if trigger == "A04" else rng.choice(["I", "O"])
        dispo = rng.choice(["01", "01", "01", "07"]) if trigger == "A03" else ""
        pv1 = ["PV1", "1", klass, "WARD^^^RXQ", "", "", "", "C1^Doc"] + [""] * 11 + [f"V{i}"]
        pv1 += [""] * 16 + [dispo] + [""] * 7 + [day, day]
        segs = [f"MSH|^~\\&|PAS|RXQ|FE|HSCP|{day}||ADT^{trigger}^ADT_A01|m{i}|P|2.4",
                f"EVN|{trigger}|{day}", pid, "|".join(pv1), *_padding(rng)]
    return ("\r".join(segs) + "\r").encode()


def _replay(messages: list[bytes], folder: Path) -> float:
    feed = folder / "feed"
    feed.mkdir()
    for start in range(0, len(messages), 1000):
        (feed / f"{start:07d}.hl7").write_bytes(b"".join(messages[start:start + 1000]))
    engine = load_engine(Settings())
    store = open_store(str(folder / "replay.sqlite3"))
    began = time.perf_counter()
    result = replay([feed], engine, store)
    elapsed = time.perf_counter() - began
    store.close()
    print(f"  replay: {len(messages):,} messages in {elapsed:.2f} s = "
          f"{len(messages) / elapsed:,.0f} messages/s; signals: "
          + ", ".join(f"{k[7:]} {v:,}" for k, v in sorted(result.stats.items())
                      if k.startswith("signal ")))
    return len(messages) / elapsed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mllp(messages: list[bytes], folder: Path) -> float:
    store, mllp, http = folder / "serve.sqlite3", _free_port(), _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "fhir_engagement", "serve", "--port", str(http), "--mllp-port",
         str(mllp), "--store", str(store)], stderr=subprocess.DEVNULL)
    try:
        sock = _connect(mllp)
        cpu, latencies, began = cpu_seconds(server.pid), [], time.perf_counter()
        for raw in messages:
            sent = time.perf_counter()
            sock.sendall(START + raw + END)
            _read_ack(sock)
            latencies.append(time.perf_counter() - sent)
        acked = time.perf_counter() - began
        _wait_processed(store, began)
        cpu = cpu_seconds(server.pid) - cpu
        sock.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    q = statistics.quantiles(latencies, n=100)
    print(f"  MLLP: {len(messages):,} messages ACKed in {acked:.2f} s = "
          f"{len(messages) / acked:,.0f} messages/s; ACK latency p50 {q[49] * 1000:.2f} ms, "
          f"p99 {q[98] * 1000:.2f} ms; server CPU {cpu:.2f} s ({cpu / len(messages) * 1e6:.0f} us a "
          "message, kept and processed)")
    return len(messages) / acked


def _connect(port: int) -> socket.socket:
    for _ in range(100):  # bounded: the server starts in about a second
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def _read_ack(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(END):
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("the server closed the connection")
        data += chunk
    if b"MSA|AA|" not in data:
        raise SystemExit(f"not accepted: {data!r}")
    return data


def _wait_processed(store: Path, began: float) -> None:
    for _ in range(1200):  # bounded: two minutes
        with sqlite3.connect(store) as db:
            pending = db.execute("SELECT COUNT(*) FROM inbox WHERE state = 'pending'").fetchone()[0]
        if pending == 0:
            print(f"        all processed {time.perf_counter() - began:.2f} s after the first send")
            return
        time.sleep(0.1)
    print("        the inbox was not drained within two minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="messages (default 20,000)")
    args = parser.parse_args()
    rng = random.Random(SEED)
    messages = [_message(i, rng) for i in range(args.n)]
    size = sum(map(len, messages)) / len(messages)
    print(f"HL7 v2 mix: {args.n:,} messages, {size:,.0f} B on average (seed {SEED})")
    with tempfile.TemporaryDirectory() as tmp:
        _replay(messages, Path(tmp))
        _mllp(messages, Path(tmp))


if __name__ == "__main__":
    main()
