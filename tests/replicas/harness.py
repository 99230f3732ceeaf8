"""Several real ``serve`` processes on one store, fed no-shows over HTTP and MLLP, and what they
wrote read back from the FHIR server. Shared by tests/replicas/ and bench/replicas.py.

The feed: ``children`` children (no known status, aged 7-8), ``per_child`` no-shows each, a few
weeks apart, so each child's pattern climbs single -> repeat -> persistent (rules.md s.3). Half
the children are fed over HTTP (``PUT /notify/Appointment/{id}``), half over MLLP (SIU^S26):
one child's events all come by one channel, because two channels are two queues even in one
process, and only within a queue is arrival order kept. Each child's events are sent in time
order, the next only after the previous one was acknowledged (2xx / AA), which is the order one
process sees; event number j overall goes to replica j mod n (round-robin). A refusal (503, AR,
no answer) is counted and the event sent again, to the next replica: what a sender does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.conftest import free_port
from tests.hl7v2.messages import nhs_number, siu

NHS = "https://fhir.nhs.uk/Id/nhs-number"
READ_TOKEN = "replica-tests-read-token"
AUDIT_KEY = "ab" * 32  # every replica the same key: log hashes and audit rows agree between them
START, END = b"\x0b", b"\x1c\r"
FIRST_DAY = date(2025, 12, 1)


# -- the feed ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Child:
    index: int
    channel: str  # "http" or "mllp"

    @property
    def patient_id(self) -> str:
        return f"rep-child-{self.index}"

    @property
    def nhs(self) -> str:
        return nhs_number(700000 + self.index * 7)

    @property
    def birth(self) -> str:
        return f"2018-03-{1 + self.index % 28:02d}"

    def patient(self) -> dict[str, Any]:
        """The child's Patient as the trust's FHIR server holds it (found there by NHS number)."""
        return {"resourceType": "Patient", "id": self.patient_id, "birthDate": self.birth,
                "identifier": [{"system": NHS, "value": self.nhs}]}


@dataclass(frozen=True)
class NoShow:
    child: Child
    k: int  # the child's k-th no-show (0-based): they are sent in this order

    @property
    def when(self) -> str:
        """Event time: 2 weeks apart per child, 25 of them within 12 months (one pattern window)."""
        day = FIRST_DAY + timedelta(days=self.k * 14 + self.child.index % 5)
        return f"{day.isoformat()}T10:00:00Z"

    @property
    def appointment_id(self) -> str:
        return f"rep-{self.child.index}-{self.k}"

    def body(self) -> bytes:
        if self.child.channel == "http":
            return orjson.dumps({
                "resourceType": "Appointment", "id": self.appointment_id,
                "meta": {"versionId": "1"}, "status": "noshow", "start": self.when,
                "participant": [{"actor": {"reference": f"Patient/{self.child.patient_id}"},
                                 "status": "accepted"}]})
        when = self.when.replace("-", "").replace(":", "").replace("T", "")[:14]
        return siu("S26", f"REP-{self.child.index}-{self.k}", self.appointment_id.upper(), when,
                   self.child.nhs, birth=self.child.birth.replace("-", ""))


def feed(children: int, per_child: int) -> list[NoShow]:
    """The no-shows in the global order they are dealt out to replicas (round-robin)."""
    kids = [Child(i, "http" if i % 2 == 0 else "mllp") for i in range(children)]
    return [NoShow(child, k) for k in range(per_child) for child in kids]


# -- the replicas -----------------------------------------------------------------------------
@dataclass
class Replica:
    """One ``fhir-engagement serve`` process, started through the CLI as an operator starts it."""

    name: str
    store: str
    fhir_base: str
    log: Path
    port: int = field(default_factory=free_port)
    mllp_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_ENGAGEMENT_")}
        env |= {"FHIR_ENGAGEMENT_REPLICA_NAME": self.name, "FHIR_ENGAGEMENT_AUDIT_KEY": AUDIT_KEY,
                "FHIR_ENGAGEMENT_READ_TOKEN": READ_TOKEN}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fhir_engagement", "serve", "--port", str(self.port),
                 "--mllp-port", str(self.mllp_port), "--store", self.store,
                 "--fhir-base", self.fhir_base],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no drain, no lease released, no goodbye."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive and self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])


async def wait_ready(http: aiohttp.ClientSession, replicas: Sequence[Replica],
                     within: float = 30) -> None:
    """Every replica answers /healthz, its MLLP port takes connections, and one holds the lease."""
    deadline = time.monotonic() + within
    for replica in replicas:
        while not await _answers(http, replica):
            if not replica.alive:
                raise AssertionError(f"{replica.name} exited:\n{replica.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{replica.name} did not start:\n{replica.log_tail()}")
            await asyncio.sleep(0.1)
    while await lease_holder(http, replicas) is None:
        if time.monotonic() > deadline:
            raise AssertionError("no replica took the lease")
        await asyncio.sleep(0.1)


async def _answers(http: aiohttp.ClientSession, replica: Replica) -> bool:
    try:
        async with http.get(f"{replica.url}/healthz") as resp:
            if resp.status != 200:
                return False
        _, writer = await asyncio.open_connection("127.0.0.1", replica.mllp_port)
        writer.close()
        await writer.wait_closed()
        return True
    except (aiohttp.ClientError, OSError):
        return False


async def readyz(http: aiohttp.ClientSession, replica: Replica) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{replica.url}/readyz",
                        headers={"Authorization": f"Bearer {READ_TOKEN}"}) as resp:
        return resp.status, await resp.json()


async def lease_holder(http: aiohttp.ClientSession,
                       replicas: Sequence[Replica]) -> Replica | None:
    """The replica whose /readyz says it holds the lease (None while none does)."""
    for replica in replicas:
        if not replica.alive:
            continue
        with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
            if (await readyz(http, replica))[1].get("lease") == "held":
                return replica
    return None


async def next_holder(http: aiohttp.ClientSession, replicas: Sequence[Replica],
                      within: float = 30) -> float:
    """Seconds until a (live) replica says it holds the lease."""
    began = time.monotonic()
    for _ in range(int(within / 0.05)):
        if await lease_holder(http, replicas) is not None:
            return time.monotonic() - began
        await asyncio.sleep(0.05)
    raise AssertionError(f"no replica took the lease within {within:.0f} s")


async def metrics(http: aiohttp.ClientSession, replica: Replica) -> dict[str, float]:
    """The replica's /metrics as ``{'family{labels}': value}``."""
    async with http.get(f"{replica.url}/metrics",
                        headers={"Authorization": f"Bearer {READ_TOKEN}"}) as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def wait_settled(http: aiohttp.ClientSession, replicas: Sequence[Replica],
                       within: float = 120) -> float:
    """Until the shared inbox and outbox are empty (asked of a live replica); seconds taken."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        replica = next(r for r in replicas if r.alive)
        with contextlib.suppress(aiohttp.ClientError, OSError):
            values = await metrics(http, replica)
            if (values.get("fhir_engagement_inbox_depth", 1) == 0
                    and values.get('fhir_engagement_deliveries{state="pending"}', 0) == 0):
                return time.monotonic() - began
        await asyncio.sleep(0.2)
    raise AssertionError("the inbox or the outbox did not empty in time")


# -- the sender -------------------------------------------------------------------------------
@dataclass
class Sent:
    """What the sender saw: answers by kind, and the refusals' times (monotonic).

    ``halfway`` is set once half the events were kept: the moment a test stages its failure."""

    total: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    refusals: list[tuple[float, str]] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)
    halfway: asyncio.Event = field(default_factory=asyncio.Event)

    def kept(self) -> None:
        self.accepted_at.append(time.monotonic())
        if len(self.accepted_at) * 2 >= self.total:
            self.halfway.set()


async def send_one(http: aiohttp.ClientSession, replica: Replica, no_show: NoShow) -> str:
    """One event to one replica: 'kept' (2xx / AA), else what came back ('503', 'AR', ...)."""
    try:
        if no_show.child.channel == "http":
            async with http.put(f"{replica.url}/notify/Appointment/{no_show.appointment_id}",
                                data=no_show.body(),
                                headers={"Content-Type": "application/fhir+json"}) as resp:
                await resp.read()
                return "kept" if 200 <= resp.status < 300 else str(resp.status)
        return await _mllp(replica.mllp_port, no_show.body())
    except (TimeoutError, aiohttp.ClientError, OSError, asyncio.IncompleteReadError):
        return "no answer"


async def _mllp(port: int, message: bytes) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(START + message + END)
        await writer.drain()
        ack = await asyncio.wait_for(reader.readuntil(END), 30)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    found = re.search(rb"\rMSA\|([A-Z]{2})\|", ack)
    code = found.group(1).decode() if found else "unreadable"
    return "kept" if code == "AA" else code


async def send_all(http: aiohttp.ClientSession, replicas: Sequence[Replica],
                   no_shows: Sequence[NoShow], sent: Sent | None = None,
                   retry: float = 0.3) -> Sent:
    """Every no-show kept once acknowledged; each child's in order, children side by side."""
    sent = sent or Sent()
    sent.total = len(no_shows)
    by_child: dict[int, list[tuple[int, NoShow]]] = {}
    for j, no_show in enumerate(no_shows):
        by_child.setdefault(no_show.child.index, []).append((j, no_show))

    async def child_stream(events: list[tuple[int, NoShow]]) -> None:
        for j, no_show in events:
            turn = j
            while True:
                replica = replicas[turn % len(replicas)]
                answer = "no answer" if not replica.alive else await send_one(http, replica,
                                                                                no_show)
                sent.answers[f"{no_show.child.channel} {answer}"] += 1
                if answer == "kept":
                    sent.kept()
                    break
                sent.refusals.append((time.monotonic(), f"{no_show.child.channel} {answer}"))
                turn += 1  # the next replica, as a sender with several addresses does
                await asyncio.sleep(retry)

    await asyncio.gather(*(child_stream(events) for events in by_child.values()))
    return sent


# -- what the FHIR server holds ---------------------------------------------------------------
async def put_patients(http: aiohttp.ClientSession, base: str, no_shows: Sequence[NoShow]) -> None:
    for child in {n.child for n in no_shows}:
        async with http.put(f"{base}/Patient/{child.patient_id}", json=child.patient()) as resp:
            assert resp.status in (200, 201), await resp.text()


async def search_all(http: aiohttp.ClientSession, base: str, rtype: str) -> list[dict[str, Any]]:
    """Every resource of a type on the server, following the Bundle's next links."""
    found: list[dict[str, Any]] = []
    url: str | None = f"{base}/{rtype}?_count=500"
    while url:
        async with http.get(url) as resp:
            assert resp.status == 200, await resp.text()
            bundle = await resp.json(content_type=None)
        found += [e["resource"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle.get("link", [])
                    if link.get("relation") == "next"), None)
    return found


def _ident(resource: dict[str, Any]) -> str:
    ident = resource["identifier"][0]
    return f"{ident['system']}|{ident['value']}"


def task_view(task: dict[str, Any]) -> tuple[object, ...]:
    """The fields of a Task that matter to whoever acts on it."""
    due = task.get("restriction", {}).get("period", {}).get("end")
    return (task["code"]["coding"][0]["code"], task["status"], task.get("priority"),
            orjson.dumps(task.get("owner")).decode(), due, orjson.dumps(task["focus"]).decode(),
            orjson.dumps(task["for"]).decode())


def flag_view(flag: dict[str, Any]) -> tuple[object, ...]:
    priority = next((e.get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code")
                     for e in flag.get("extension", []) if e["url"].endswith("flag-priority")), None)
    return (flag["code"]["coding"][0]["code"], flag["status"], priority,
            flag.get("period", {}).get("start"), orjson.dumps(flag["subject"]).decode())


@dataclass
class Written:
    """What the server holds after a run: Tasks and Flags by identifier, with their versions."""

    tasks: dict[str, tuple[object, ...]]
    flags: dict[str, tuple[object, ...]]
    task_versions: Counter[str]
    flag_versions: dict[str, str]
    task_count: int  # resources, not identifiers: a Task created twice shows here
    flag_count: int
    provenances: int


async def written(http: aiohttp.ClientSession, base: str) -> Written:
    tasks = await search_all(http, base, "Task")
    flags = await search_all(http, base, "Flag")
    provenances = await search_all(http, base, "Provenance")
    return Written(
        tasks={_ident(t): task_view(t) for t in tasks},
        flags={_ident(f): flag_view(f) for f in flags},
        task_versions=Counter(t.get("meta", {}).get("versionId", "?") for t in tasks),
        flag_versions={_ident(f): f.get("meta", {}).get("versionId", "?") for f in flags},
        task_count=len(tasks), flag_count=len(flags), provenances=len(provenances))
