"""A region's year in one replay: wall time, events/s, peak RSS, and the json.loads floor.

Generates (fixed seed, into a temp folder) what eight providers of one region send in a year:
``--events`` appointments and encounters (default 2,000,000) for ``--events / 10`` children
(Patient.ndjson as the spine would give them; valid NHS numbers, ages 0-17, some adults), each
provider with its own mix and not-brought rate (10% of appointments overall):

    ODS   kind                         format     share  appointments  not brought
    RJ1   acute trust (ED and clinics) FHIR NDJSON  18%      60%           9%
    RYJ   acute trust                  FHIR NDJSON  16%      65%           8%
    RAL   acute trust                  FHIR NDJSON  14%      70%          10%
    RRV   CAMHS / mental health        FHIR NDJSON   8%      95%          14%
    RQM   children's hospital          FHIR NDJSON  14%      75%           7%
    R1K   community (home visits)      FHIR NDJSON  12%      90%          12%
    RV3   acute trust PAS              HL7 v2 SIU   10%     100%          11%
    RXQ   community PAS                HL7 v2 SIU    8%     100%          10%

Then replays the folder FROM THE COMMAND LINE in a child process (``fhir-engagement replay DATA
--out BUNDLE --store FILE``: what an operator runs, Bundle written), and prints its wall time,
events/s, peak RSS (the child's, from ``getrusage``) and the floor: reading every NDJSON line
and ``json.loads`` of it (the v2 lines have no JSON; the floor counts the FHIR events, and the
replay's share of it is events/s over floor events/s, as bench/replay_bench.py does).

    .venv/bin/python bench/region_year.py --events 100000
    .venv/bin/python bench/region_year.py               # the year: 2 M events (~4 GB on disk)
    .venv/bin/python bench/region_year.py --events 100000 --postgres   # into PostgreSQL

``--postgres`` replays into a fresh schema of the ``test`` database at 127.0.0.1:5432 (dropped
after) instead of a SQLite file: the issue 14 figure, PostgreSQL's events/s beside SQLite's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).parent))
from replay_bench import Child, Generator  # the FHIR shapes, reused

SEED = 20_261_203
END = datetime(2026, 11, 1, tzinfo=UTC)
V2_PER_FILE = 5_000  # messages per .hl7 file: a feed's daily file, read whole


@dataclass(frozen=True)
class Provider:
    ods: str
    v2: bool
    share: float
    appointments: float
    not_brought: float
    fhir_index: int = 0  # which of replay_bench's trusts lends its practitioners


REGION = (
    Provider("RJ1", False, 0.18, 0.60, 0.09, 0), Provider("RYJ", False, 0.16, 0.65, 0.08, 1),
    Provider("RAL", False, 0.14, 0.70, 0.10, 2), Provider("RRV", False, 0.08, 0.95, 0.14, 3),
    Provider("RQM", False, 0.14, 0.75, 0.07, 4), Provider("R1K", False, 0.12, 0.90, 0.12, 5),
    Provider("RV3", True, 0.10, 1.00, 0.11), Provider("RXQ", True, 0.08, 1.00, 0.10),
)


class Year(Generator):
    """replay_bench's generator over one year, its resources re-badged per provider."""

    span_days = 365

    def __init__(self, seed: int) -> None:
        super().__init__(seed, END)
        self.start = END - timedelta(days=365)

    def fhir(self, child: Child, number: int, provider: Provider) -> dict[str, Any]:
        rng = self.rng
        child.home = provider.fhir_index  # the practitioners of this provider
        if rng.random() >= provider.appointments:
            res = self.encounter(child, number)
            res["serviceProvider"] = {"reference": f"Organization/{provider.ods}"}
            return res
        res = self.appointment(child, number)
        res["extension"][0]["valueReference"]["reference"] = f"Organization/{provider.ods}"
        res["identifier"][0]["system"] = f"https://{provider.ods.lower()}.example.nhs.uk/Id/apt"
        if res["status"] in ("noshow", "fulfilled"):  # 80% of replay_bench's: re-rolled here
            res["status"] = "noshow" if rng.random() < provider.not_brought / 0.8 else "fulfilled"
        return res

    def v2(self, child: Child, number: int, provider: Provider) -> bytes:
        rng = self.rng
        at = self._when(clinic=True).strftime("%Y%m%d%H%M%S+0000")
        missed = rng.random() < provider.not_brought
        trigger, status = ("S26", "Noshow") if missed else ("S14", "Complete")
        apt = f"{provider.ods}{number:09d}"
        segments = [
            f"MSH|^~\\&|PAS|{provider.ods}|FHIR-ENGAGEMENT|HSCP|{at}||SIU^{trigger}^SIU_S12|"
            f"{provider.ods}-{number}|P|2.5.1",
            f"SCH|{apt}|{apt}|||||||30|MIN|^^30^{at}^{at}||||||||||||||{status}",
            f"TQ1|||||||{at}|{at}|R",
            f"PID|1||{child.nhs}^^^NHS^NH||{child.name[1]}^{child.name[0]}||"
            f"{child.birth.strftime('%Y%m%d')}|U",
            "RGS|1",
            "AIS|1||PAEDS^Paediatric outpatients^L",
        ]
        return "\r".join(segments).encode() + b"\r\n"


@dataclass
class Written:
    events: int = 0
    fhir_events: int = 0
    nbytes: int = 0


def generate(folder: Path, events: int, seed: int) -> tuple[Written, Counter[str]]:
    gen = Year(seed)
    children = gen.children(max(events // 10, 1))
    written, mix = Written(), Counter[str]()
    spine = folder / "spine"
    spine.mkdir(parents=True)
    with (spine / "Patient.ndjson").open("wb") as out:
        for child in children:
            written.nbytes += _line(out, gen.patient(child))
    files: dict[str, IO[bytes]] = {}
    counts: Counter[str] = Counter()
    who = gen.rng.choices(children, weights=[c.weight for c in children], k=events)
    where = gen.rng.choices(REGION, weights=[p.share for p in REGION], k=events)
    try:
        for number, (child, provider) in enumerate(zip(who, where, strict=True), start=1):
            if provider.v2:
                name = f"siu-{counts[provider.ods] // V2_PER_FILE:04d}.hl7"
                data = gen.v2(child, number, provider)
                mix[f"{provider.ods} v2 {'S26' if b'S26' in data[:80] else 'S14'}"] += 1
            else:
                res = gen.fhir(child, number, provider)
                name = f"{res['resourceType']}.ndjson"
                data = json.dumps(res, separators=(",", ":")).encode() + b"\n"
                mix[f"{provider.ods} {res['resourceType']} {res.get('status')}"] += 1
                written.fhir_events += 1
            counts[provider.ods] += 1
            key = f"{provider.ods}/{name}"
            if key not in files:
                for old in [k for k in files if k.startswith(f"{provider.ods}/siu-")]:
                    files.pop(old).close()  # a v2 feed's files one after another
                (folder / provider.ods).mkdir(exist_ok=True)
                files[key] = (folder / key).open("wb")
            files[key].write(data)
            written.events += 1
            written.nbytes += len(data)
    finally:
        for file in files.values():
            file.close()
    return written, mix


def kept_or_generated(folder: Path, events: int, seed: int) -> tuple[Written, Counter[str]]:
    """What ``--keep`` generated before with these arguments, or generated now (and kept)."""
    marker = folder.parent / f"generated-{events}-{seed}.json"
    if folder.exists() and marker.exists():
        saved = json.loads(marker.read_text())
        return Written(**saved["written"]), Counter(saved["mix"])
    written, mix = generate(folder, events, seed)
    marker.write_text(json.dumps({"written": written.__dict__, "mix": mix}))
    return written, mix


def _line(out: IO[bytes], res: dict[str, Any]) -> int:
    data = json.dumps(res, separators=(",", ":")).encode() + b"\n"
    out.write(data)
    return len(data)


def floor(folder: Path) -> tuple[float, int]:
    """Read every NDJSON line and json.loads it, a file at a time: seconds, event lines."""
    began, events = time.perf_counter(), 0
    for path in sorted(folder.rglob("*.ndjson")):
        with path.open("rb") as file:
            for line in file:
                json.loads(line)
                events += path.name != "Patient.ndjson"
    return time.perf_counter() - began, events


def replay_cli(folder: Path, work: Path, store: str | None = None,
               workers: int | None = None, segments: int = 0) -> tuple[float, float, str]:
    """The command line, in a child process: wall seconds, the peak RSS (MB) of the largest of
    its processes (a reading worker is a fork of it, sharing its start-up pages), its summary.

    ``segments`` > 0: with its progress lines, and the rate of every ``segments`` events printed
    as they pass (wall, and the replaying process's own user and system CPU, from /proc)."""
    command = [sys.executable, "-m", "fhir_engagement", "replay", str(folder), "--out",
               str(work / "bundle.json"), "--store", store or str(work / "state.sqlite3"),
               *(() if segments else ("--quiet",)),
               *(("--workers", str(workers)) if workers else ())]
    began = time.perf_counter()
    if segments:
        returncode, stderr = _with_segments(command, segments, store or str(work / "state.sqlite3"))
    else:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        returncode, stderr = done.returncode, done.stderr
    seconds = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss = usage.ru_maxrss / 1024
    print(f"replay CPU       {usage.ru_utime:,.1f} s user, {usage.ru_stime:,.1f} s system "
          "(every process of it; wall is shared with whatever else runs)")
    if returncode not in (0, 1):
        sys.exit(f"replay failed ({returncode}):\n{stderr}")
    return seconds, rss, stderr


def _with_segments(command: list[str], every: int, store: str) -> tuple[int, str]:
    """Run ``command``, reading its progress lines; one line per ``every`` events processed:
    events/s (wall), user and system CPU microseconds per event, the store file and its WAL."""
    tick = os.sysconf("SC_CLK_TCK")
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    kept: list[str] = []
    last = (0, time.perf_counter(), 0.0, 0.0)
    print(f"{'events':>10} {'events/s':>9} {'user us/ev':>10} {'sys us/ev':>9} "
          f"{'store MB':>9} {'wal MB':>8}", file=sys.stderr)
    for line in child.stderr:
        if not line.startswith("processed "):
            kept.append(line)
            continue
        done = int(line.split()[1].replace(",", ""))
        if done - last[0] < every:
            continue
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, system = int(fields[11]) / tick, int(fields[12]) / tick
        now, n = time.perf_counter(), done - last[0]
        print(f"{done:>10,} {n / (now - last[1]):>9,.0f} {(user - last[2]) / n * 1e6:>10.0f} "
              f"{(system - last[3]) / n * 1e6:>9.0f} {_mb(store):>9,.0f} "
              f"{_mb(store + '-wal'):>8,.0f}", file=sys.stderr, flush=True)
        last = (done, now, user, system)
    return child.wait(), "".join(kept)


def _mb(path: str) -> float:
    with contextlib.suppress(OSError):
        return os.path.getsize(path) / 1e6
    return 0.0


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A schema of its own in the ``test`` database, for one replay, dropped after."""
    import psycopg  # only for --postgres

    base, schema = "postgresql://postgres@127.0.0.1:5432/test", f"region_year_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000,
                        help="appointments and encounters in the year (default 2000000)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--keep", type=Path, help="generate and replay here, and keep it")
    parser.add_argument("--workers", type=int, help="the replay's reading processes "
                        "(default: the command line's)")
    parser.add_argument("--segments", type=int, default=0, metavar="N",
                        help="print the rate of every N events as the replay goes")
    parser.add_argument("--postgres", action="store_true",
                        help="replay into a fresh PostgreSQL schema instead of a SQLite file")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be positive")
    with tempfile.TemporaryDirectory(prefix="region-year-") as tmp:
        work = args.keep or Path(tmp)
        data = work / "data"
        began = time.perf_counter()
        written, mix = kept_or_generated(data, args.events, args.seed)
        print(f"generated {written.events:,} events ({written.fhir_events:,} FHIR, "
              f"{written.events - written.fhir_events:,} HL7 v2), "
              f"{written.nbytes / 1e6:,.0f} MB in {time.perf_counter() - began:.0f}s",
              file=sys.stderr)
        floor_s, floor_events = floor(data)
        print("replaying from the command line ...", file=sys.stderr)
        with fresh_schema() if args.postgres else contextlib.nullcontext() as store:
            if args.keep and not args.postgres:  # a fresh store each run, the data kept
                for end in ("", "-wal", "-shm"):
                    (work / f"state.sqlite3{end}").unlink(missing_ok=True)
            seconds, rss, summary = replay_cli(data, work, store, args.workers, args.segments)
        rate, floor_rate = written.events / seconds, floor_events / floor_s
        noshows = sum(v for k, v in mix.items() if k.endswith(("noshow", "S26")))
        print(f"events           {written.events:,} ({noshows:,} not brought)")
        print(f"store            {'PostgreSQL (fresh schema)' if args.postgres else 'SQLite file'}")
        print(f"replay wall      {seconds:,.1f} s  (goal < 240 s)")
        print(f"replay rate      {rate:,.0f} events/s")
        print(f"peak RSS         {rss:,.0f} MB  (goal < 1,024 MB)")
        print(f"json.loads floor {floor_s:,.1f} s for {floor_events:,} FHIR events, "
              f"{floor_rate:,.0f} events/s; replay at {rate / floor_rate:.1%} of it")
        print("replay summary:\n  " + "\n  ".join(summary.strip().splitlines()[:8]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
