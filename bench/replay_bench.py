"""Replay throughput benchmark: ``fhir-engagement replay`` against a stdlib ``json.loads`` floor.

What it measures, on one synthetic, repeatable (fixed seed) Bulk-Data-style export:

* the data: N FHIR R4 Appointments and Encounters (default 100,000) as NDJSON, for about N/10
  children (Patient.ndjson, valid modulus-11 NHS numbers, ages 0-17 and some adults), over two
  years, several booking organisations (UK Core BookingOrganization extension) and practitioners.
  10% of Appointments are ``noshow``, some ``cancelled`` (most with reason ``pat``), the rest
  ``fulfilled``/``booked``; some Encounters are finished ``EMER`` attendances. ~1.0-1.2 KB each;
* the floor: read every NDJSON file and ``json.loads`` every line (best of ``--floor-repeat``);
  orjson is timed too, for reference, as the replay parses with it;
* the ingest stages on their own: ``iter_items`` (read + split into raw items) and then
  ``Readers.read`` (ingest/records.py: orjson + Reader -> Events/PatientFacts), without the store
  or the guidance;
* replay end to end, in-process: ``load_engine(Settings(store=...))`` (timed apart), then
  ``replay([folder], engine, store)`` on a fresh SQLite file store in a temp dir. Events/s counts
  Appointment + Encounter lines; the ratio to the json.loads floor is what issue 15 sets at
  >= 15% (stretch 25%). Tasks/Flags/Provenance written come from the Bundle and ``result.stats``;
* writing the Bundle as ``cli.py`` does (``orjson.dumps(..., OPT_INDENT_2)`` + write), apart.

With ``--profile`` a second replay (``--profile-n`` events, default: the same N) runs under
cProfile in its own fresh store, and the top functions by cumulative and by own time are printed.

Run from the repository root:

    .venv/bin/python bench/replay_bench.py --n 100000
    .venv/bin/python bench/replay_bench.py --n 20000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from fhir_engagement.config import Settings
from fhir_engagement.ingest.files import iter_items
from fhir_engagement.ingest.records import RawItem
from fhir_engagement.ingest.references import NHS_NUMBER_SYSTEM
from fhir_engagement.pipeline import Engine, load_engine
from fhir_engagement.replay import ReplayResult, default_workers, replay
from fhir_engagement.store import open_store

TARGET, STRETCH = 0.15, 0.25  # issue 15: replay at >= 15% of the json.loads floor (stretch 25%)
SEED = 20_251_124

# -- vocabulary of the synthetic export ------------------------------------------------------
SCT = "http://snomed.info/sct"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CANCEL_SYSTEM = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
BOOKING_ORG = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-BookingOrganization"
NHS_VERIFICATION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus")
NHS_VERIFICATION_CS = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland")
ODS_ORG = "https://fhir.nhs.uk/Id/ods-organization-code"
PROFILE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
APPOINTMENT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0276"

PROVIDERS = ("RJ1", "RYJ", "RAL", "RRV", "RQM", "R1K", "RV3")  # ODS codes of the trusts
GP_PRACTICES = ("F83004", "F83006", "F84003", "E83007", "Y02960", "H85020", "A81001", "G85035")
SERVICES = (  # Appointment/Encounter serviceType (SNOMED CT)
    ("310025004", "Paediatric service"),
    ("310084003", "Community paediatric service"),
    ("310093007", "Paediatric cardiology service"),
    ("310146003", "Speech and language therapy service"),
    ("310127003", "Child and adolescent psychiatry service"),
    ("310104000", "Paediatric dermatology service"),
)
HOME_VISIT = ("439708006", "Home visit (procedure)")
ENCOUNTER_TYPES = (("185389009", "Follow-up visit"), ("185345009", "Encounter for symptom"),
                   ("270427003", "Patient-initiated encounter"))
ED_TYPE = ("4525004", "Emergency department patient visit")
REASONS = (("21522001", "Abdominal pain"), ("386661006", "Fever"), ("49727002", "Cough"),
           ("271807003", "Eruption of skin"), ("25064002", "Headache"),
           ("419076005", "Allergic reaction"), ("125605004", "Fracture of bone"),
           ("195967001", "Asthma"))
DISCHARGE = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
GIVEN = ("Olivia", "Amelia", "Isla", "Ava", "Mia", "Noah", "Oliver", "George", "Arthur", "Leo",
         "Muhammad", "Harry", "Aisha", "Zara", "Freya", "Jack", "Ivy", "Theo", "Lily", "Oscar")
FAMILY = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
          "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Khan",
          "Ahmed", "Hall", "Wood", "Clarke", "Lewis", "Hughes", "Edwards", "Okafor")
STREETS = ("High Street", "Station Road", "Church Lane", "Victoria Road", "Green Lane",
           "Manor Road", "Park Avenue", "Queens Road", "Kings Road", "Mill Lane")
TOWNS = (("London", "SE1"), ("London", "W2"), ("London", "NW3"), ("London", "WC1E"),
         ("London", "SW10"), ("Harrow", "HA1"), ("Wembley", "HA0"))


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def nhs_number(rng: random.Random) -> str:
    """A valid (modulus-11) NHS number in the 9xx test range."""
    while True:
        digits = [9, *(rng.randrange(10) for _ in range(8))]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return "".join(map(str, digits)) + str(check)


@dataclass
class Child:
    pid: str
    nhs: str
    name: tuple[str, str]
    birth: date
    home: int  # index of the usual provider
    weight: float  # how often the child is seen (a few children are seen a lot)


@dataclass
class Export:
    folder: Path
    events: int
    lines: int
    nbytes: int
    kinds: Counter[str] = field(default_factory=Counter)


class Generator:
    """The synthetic export: repeatable for a given seed and N."""

    span_days = 730  # events fall in the span_days before ``end`` (the recent ones in its last 90)

    def __init__(self, seed: int, end: datetime) -> None:
        self.rng = random.Random(seed)
        self.end = end
        self.start = end - timedelta(days=730)
        self.practitioners = [
            [(self._uuid(), f"Dr {self.rng.choice(GIVEN)[0]}. {self.rng.choice(FAMILY)}")
             for _ in range(10)]
            for _ in PROVIDERS]

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def children(self, count: int) -> list[Child]:
        rng, seen, out = self.rng, set(), []
        for _ in range(count):
            nhs = nhs_number(rng)
            while nhs in seen:
                nhs = nhs_number(rng)
            seen.add(nhs)
            adult = rng.random() < 0.08
            age_days = (rng.randrange(18 * 365 + 5, 45 * 365) if adult
                        else rng.randrange(0, 18 * 365))
            birth = (self.end - timedelta(days=age_days)).date()
            out.append(Child(self._uuid(), nhs, (rng.choice(GIVEN), rng.choice(FAMILY)), birth,
                             rng.randrange(len(PROVIDERS)), rng.lognormvariate(0, 0.9)))
        return out

    def patient(self, child: Child) -> dict[str, Any]:
        rng = self.rng
        town, district = rng.choice(TOWNS)
        gp = rng.choice(GP_PRACTICES)
        return {
            "resourceType": "Patient",
            "id": child.pid,
            "meta": {"versionId": str(rng.randrange(1, 6)),
                     "lastUpdated": _stamp(self.start - timedelta(days=rng.randrange(1, 400))),
                     "profile": [f"{PROFILE}Patient"]},
            "identifier": [
                {"extension": [{"url": NHS_VERIFICATION, "valueCodeableConcept": _cc(
                    NHS_VERIFICATION_CS, "01", "Number present and verified")}],
                 "system": NHS_NUMBER_SYSTEM, "value": child.nhs},
                {"use": "secondary", "system": "https://trust.example.nhs.uk/Id/local-patient-id",
                 "value": f"MRN{rng.randrange(10**7, 10**8)}"},
            ],
            "active": True,
            "name": [{"use": "official", "family": child.name[1], "given": [child.name[0]]}],
            "gender": rng.choice(("female", "male")),
            "birthDate": child.birth.isoformat(),
            "address": [{"use": "home", "line": [f"{rng.randrange(1, 200)} {rng.choice(STREETS)}"],
                         "city": town,
                         "postalCode": f"{district} {rng.randrange(1, 10)}"
                                       f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
                                       f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"}],
            "generalPractitioner": [{"type": "Organization",
                                     "identifier": {"system": ODS_ORG, "value": gp}}],
        }

    def _when(self, clinic: bool, recent: bool = False) -> datetime:
        rng = self.rng
        span = 90 if recent else self.span_days
        day = self.end - timedelta(days=rng.randrange(0, span) + 1)
        if not clinic:
            return day.replace(hour=rng.randrange(24), minute=rng.randrange(60), second=0)
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        return day.replace(hour=rng.randrange(8, 17), minute=rng.choice((0, 15, 30, 45)),
                           second=0)

    def _provider(self, child: Child) -> int:
        return child.home if self.rng.random() < 0.8 else self.rng.randrange(len(PROVIDERS))

    def appointment(self, child: Child, number: int) -> dict[str, Any]:
        rng = self.rng
        org = self._provider(child)
        ods = PROVIDERS[org]
        prac_id, prac_name = rng.choice(self.practitioners[org])
        roll = rng.random()
        if roll < 0.10:
            status = "noshow"
        elif roll < 0.17:
            status = "cancelled"
        elif roll < 0.30:
            status = "booked"
        else:
            status = "fulfilled"
        start = self._when(clinic=True, recent=status == "booked")
        if status == "booked":
            start += timedelta(days=91)  # booked ones lie ahead of the export date
        minutes = rng.choice((15, 20, 30, 45, 60))
        home_visit = rng.random() < 0.05
        service = HOME_VISIT if home_visit else rng.choice(SERVICES)
        updated = start + timedelta(minutes=minutes + rng.randrange(5, 600))
        if status == "booked":
            updated = start - timedelta(days=rng.randrange(5, 60))
        res: dict[str, Any] = {
            "resourceType": "Appointment",
            "id": self._uuid(),
            "meta": {"versionId": str(rng.randrange(1, 5)), "lastUpdated": _stamp(updated)},
            "extension": [{"url": BOOKING_ORG,
                           "valueReference": {"reference": f"Organization/{ods}"}}],
            "identifier": [{"system": f"https://{ods.lower()}.example.nhs.uk/Id/appointment",
                            "value": f"APT{number:09d}"}],
            "status": status,
        }
        if status == "cancelled":
            code, display = ("pat", "Patient") if rng.random() < 0.75 else ("prov", "Provider")
            res["cancelationReason"] = _cc(CANCEL_SYSTEM, code, display)
        res |= {
            "serviceType": [_cc(SCT, *service)],
            "appointmentType": _cc(APPOINTMENT_TYPE, *rng.choice(
                (("ROUTINE", "Routine"), ("FOLLOWUP", "Follow up"), ("CHECKUP", "Check up")))),
            "start": _stamp(start),
            "end": _stamp(start + timedelta(minutes=minutes)),
            "minutesDuration": minutes,
            "participant": [
                {"actor": {"reference": f"Patient/{child.pid}",
                           "display": f"{child.name[0]} {child.name[1]}"},
                 "required": "required", "status": "accepted"},
                {"type": [_cc(PARTICIPATION, "PPRF", "primary performer")],
                 "actor": {"reference": f"Practitioner/{prac_id}", "display": prac_name},
                 "required": "required", "status": "accepted"},
            ],
        }
        return res

    def encounter(self, child: Child, number: int) -> dict[str, Any]:
        rng = self.rng
        emergency = rng.random() < 0.25
        org = rng.randrange(len(PROVIDERS)) if emergency else self._provider(child)
        ods = PROVIDERS[org]
        prac_id, prac_name = rng.choice(self.practitioners[org])
        start = self._when(clinic=not emergency)
        length = timedelta(minutes=rng.randrange(60, 420) if emergency else rng.choice((20, 30)))
        end = start + length
        if emergency:
            klass, kind, service = ("EMER", "emergency"), ED_TYPE, ("310025004",
                                                                    "Paediatric service")
        else:
            klass = rng.choices((("AMB", "ambulatory"), ("HH", "home health"),
                                 ("VR", "virtual")), (90, 6, 4))[0]
            kind, service = rng.choice(ENCOUNTER_TYPES), rng.choice(SERVICES)
        res: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": self._uuid(),
            "meta": {"versionId": str(rng.randrange(1, 4)),
                     "lastUpdated": _stamp(end + timedelta(minutes=rng.randrange(5, 300)))},
            "identifier": [{"system": f"https://{ods.lower()}.example.nhs.uk/Id/encounter",
                            "value": f"ENC{number:09d}"}],
            "status": "finished",
            "class": {"system": ACT, "code": klass[0], "display": klass[1]},
            "type": [_cc(SCT, *kind)],
            "serviceType": _cc(SCT, *service),
            "subject": {"reference": f"Patient/{child.pid}",
                        "display": f"{child.name[0]} {child.name[1]}"},
            "participant": [{"type": [_cc(PARTICIPATION, "PPRF", "primary performer")],
                             "individual": {"reference": f"Practitioner/{prac_id}",
                                            "display": prac_name}}],
            "period": {"start": _stamp(start), "end": _stamp(end)},
            "reasonCode": [_cc(SCT, *rng.choice(REASONS))],
            "serviceProvider": {"reference": f"Organization/{ods}"},
        }
        if emergency:
            res["hospitalization"] = {"dischargeDisposition": _cc(DISCHARGE, "home", "Home")}
        return res

    def write(self, folder: Path, n: int, patients: int) -> Export:
        children = self.children(patients)
        export = Export(folder, 0, 0, 0)
        with (folder / "Patient.ndjson").open("wb") as out:
            for child in children:
                self._line(out, self.patient(child), export)
        who = self.rng.choices(children, weights=[c.weight for c in children], k=n)
        with ((folder / "Appointment.ndjson").open("wb") as apts,
              (folder / "Encounter.ndjson").open("wb") as encs):
            for number, child in enumerate(who, start=1):
                if self.rng.random() < 0.7:
                    self._line(apts, self.appointment(child, number), export)
                else:
                    self._line(encs, self.encounter(child, number), export)
                export.events += 1
        return export

    @staticmethod
    def _line(out: io.BufferedWriter, res: dict[str, Any], export: Export) -> None:
        data = json.dumps(res, separators=(",", ":")).encode() + b"\n"
        out.write(data)
        export.lines += 1
        export.nbytes += len(data)
        kind = res["resourceType"]
        export.kinds[kind] += 1
        if kind == "Appointment":
            export.kinds[f"Appointment {res['status']}"] += 1
        elif kind == "Encounter":
            export.kinds[f"Encounter {res['class']['code']}"] += 1


# -- measurements ----------------------------------------------------------------------------
def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.ndjson"))


def best_of(repeat: int, run: Callable[[], object],
            clock: Callable[[], float] = time.perf_counter) -> float:
    """The shortest of ``repeat`` runs by ``clock`` (wall by default; CPU: time.process_time)."""
    best = float("inf")
    for _ in range(repeat):
        began = clock()
        run()
        best = min(best, clock() - began)
    return best


def floor_json(folder: Path) -> int:
    count = 0
    for path in _files(folder):
        for line in path.read_bytes().split(b"\n"):
            if line:
                json.loads(line)
                count += 1
    return count


def floor_orjson(folder: Path) -> int:
    count = 0
    for path in _files(folder):
        for line in path.read_bytes().split(b"\n"):
            if line:
                orjson.loads(line)
                count += 1
    return count


def _items(folder: Path) -> Iterator[RawItem]:
    for item in iter_items([folder]):
        if isinstance(item, RawItem):
            yield item


def stage_documents(folder: Path) -> int:
    return sum(1 for _ in _items(folder))


def stage_reader(folder: Path, engine: Engine) -> int:
    return sum(len(engine.records.read(item).records) for item in _items(folder))


@dataclass
class ReplayRun:
    seconds: float
    result: ReplayResult
    store_bytes: int


def run_replay(folder: Path, engine: Engine, work: Path, name: str,
               profiler: cProfile.Profile | None = None, workers: int = 1) -> ReplayRun:
    for old in work.glob(f"{name}.sqlite3*"):  # always a fresh store, even with --keep
        old.unlink()
    store = open_store(str(work / f"{name}.sqlite3"))
    try:
        began = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        try:
            result = replay([folder], engine, store, workers=workers)
        finally:
            if profiler is not None:
                profiler.disable()
        seconds = time.perf_counter() - began
    finally:
        store.close()
    size = sum(p.stat().st_size for p in work.glob(f"{name}.sqlite3*"))
    return ReplayRun(seconds, result, size)


# -- report ----------------------------------------------------------------------------------
def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f}/s" if seconds > 0 else "n/a"


def _machine() -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{p} {metadata.version(p)}"
                         for p in ("fhir.resources", "pydantic", "orjson"))
    return [("nproc", str(nproc)), ("cpu", cpu),
            ("python", f"{platform.python_implementation()} {platform.python_version()}"),
            ("sqlite", __import__("sqlite3").sqlite_version), ("packages", versions)]


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


def _outputs(result: ReplayResult) -> Counter[str]:
    return Counter(e["resource"]["resourceType"] for e in result.bundle["entry"])


def _stat_sum(stats: dict[str, int], prefix: str) -> int:
    return sum(v for k, v in stats.items() if k.startswith(prefix))


def _profile_report(profiler: cProfile.Profile, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs()
    for order in ("cumulative", "tottime"):
        print(f"\n== top {top} by {order} ==", file=out)
        stats.sort_stats(order).print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000,
                        help="Appointment+Encounter records (default 100000)")
    parser.add_argument("--patients", type=int, help="distinct Patients (default n/10)")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed (fixed by default)")
    parser.add_argument("--floor-repeat", type=int, default=3,
                        help="best of this many floor/ingest runs (default 3)")
    parser.add_argument("--profile", action="store_true",
                        help="also run the replay under cProfile and print the hotspots")
    parser.add_argument("--profile-n", type=int,
                        help="records for the profiled run (default: --n, same data)")
    parser.add_argument("--top", type=int, default=25, help="functions shown per profile order")
    parser.add_argument("--profile-out", type=Path,
                        help="also dump the raw profile here (for pstats/snakeviz)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="reading processes for the replay (default: the command line's; "
                        "the profile always reads in-process, cProfile sees no other)")
    parser.add_argument("--keep", type=Path, help="write the data and store here, and keep them")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be positive")

    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        end = datetime(2025, 11, 1, tzinfo=UTC)
        data = work / "data"
        data.mkdir(exist_ok=True)
        began = time.perf_counter()
        patients = args.patients or max(args.n // 10, 1)
        export = Generator(args.seed, end).write(data, args.n, patients)
        generated = time.perf_counter() - began
        print(f"generated {export.lines:,} lines ({export.nbytes / 1e6:,.1f} MB, "
              f"{export.nbytes / export.lines:,.0f} B/resource) in {generated:.1f}s: "
              + ", ".join(f"{k} {v:,}" for k, v in sorted(export.kinds.items())),
              file=sys.stderr)

        events = export.events
        json_s = best_of(args.floor_repeat, lambda: floor_json(data))
        orjson_s = best_of(args.floor_repeat, lambda: floor_orjson(data))
        docs_s = best_of(args.floor_repeat, lambda: stage_documents(data))

        began = time.perf_counter()
        engine = load_engine(Settings(store=str(work / "replay.sqlite3")))
        engine_s = time.perf_counter() - began
        reader_s = best_of(args.floor_repeat, lambda: stage_reader(data, engine))

        print(f"replaying ({args.workers} reading process(es)) ...", file=sys.stderr)
        run = run_replay(data, engine, work, "replay", workers=args.workers)
        result = run.result
        out = work / "bundle.json"
        began = time.perf_counter()
        body = orjson.dumps(result.bundle, option=orjson.OPT_INDENT_2)
        dump_s = time.perf_counter() - began
        began = time.perf_counter()
        out.write_bytes(body)
        write_s = time.perf_counter() - began

        outputs = _outputs(result)
        ratio = (events / run.seconds) / (events / json_s)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        stats = result.stats
        signals = ", ".join(f"{k[7:]} {v:,}" for k, v in sorted(stats.items())
                            if k.startswith("signal ")) or "none"
        print()
        print(_table("machine", _machine()))
        print()
        print(_table(f"data (seed {args.seed})", [
            ("events", f"{events:,} ({export.kinds['Appointment']:,} Appointment, "
                       f"{export.kinds['Encounter']:,} Encounter)"),
            ("patients", f"{export.kinds['Patient']:,}"),
            ("size", f"{export.nbytes / 1e6:,.1f} MB, {export.nbytes / export.lines:,.0f} B "
                     "per resource"),
        ]))
        print()
        print(_table("throughput (events = Appointment+Encounter lines, every file read; "
                     "% = of the json.loads floor)", [
            ("floor: read + json.loads", f"{json_s:8.2f}s {_rate(events, json_s)}  100.0%"),
            ("read + orjson.loads", f"{orjson_s:8.2f}s {_rate(events, orjson_s)}  "
                                    f"{json_s / orjson_s:6.1%}"),
            ("iter_items", f"{docs_s:8.2f}s {_rate(events, docs_s)}  {json_s / docs_s:6.1%}"),
            ("iter_items + Readers.read", f"{reader_s:8.2f}s {_rate(events, reader_s)}  "
                                        f"{json_s / reader_s:6.1%}"),
            (f"replay (end to end, {args.workers}w)", f"{run.seconds:8.2f}s {_rate(events, run.seconds)}  "
                                    f"{ratio:6.1%}   goal >= {TARGET:.0%} (stretch {STRETCH:.0%}): "
                                    f"{'MET' if ratio >= TARGET else 'NOT MET'}"),
            ("load_engine (start-up)", f"{engine_s:8.2f}s"),
            ("bundle orjson.dumps", f"{dump_s:8.2f}s ({len(body) / 1e6:,.1f} MB, "
                                    f"{len(result.bundle['entry']):,} entries)"),
            ("bundle write", f"{write_s:8.2f}s"),
        ]))
        print()
        print(_table("replay outputs", [
            ("Tasks", f"{outputs['Task']:,} in the Bundle; stats 'task *' "
                      f"{_stat_sum(stats, 'task '):,}"),
            ("Flags", f"{outputs['Flag']:,} in the Bundle; stats 'flag *' "
                      f"{_stat_sum(stats, 'flag '):,}"),
            ("Provenance", f"{outputs['Provenance']:,}"),
            ("signals", signals),
            ("events / documents", f"{stats.get('events', 0):,} / {stats.get('documents', 0):,}"),
            ("patients accepted", f"{stats.get('patients', 0):,}"),
            ("adults excluded", f"{stats.get('adults excluded', 0):,}"),
            ("duplicates", f"{stats.get('duplicates', 0):,}"),
            ("rejected", f"{len(result.rejected):,}"),
            ("store size", f"{run.store_bytes / 1e6:,.1f} MB"),
            ("peak RSS", f"{rss:,.0f} MB"),
        ]))
        for error in result.rejected[:5]:
            print(f"  rejected: {error.where}: {error.reason}")

        if args.profile:
            pdata = data
            if args.profile_n and args.profile_n != args.n:
                pdata = work / "profile-data"
                pdata.mkdir(exist_ok=True)
                Generator(args.seed, end).write(pdata, args.profile_n,
                                                args.patients or max(args.profile_n // 10, 1))
            print("\nprofiling a second replay (fresh store) ...", file=sys.stderr)
            profiler = cProfile.Profile()
            prun = run_replay(pdata, engine, work, "profile", profiler)
            print(f"\nprofiled replay: {prun.seconds:.2f}s under cProfile "
                  f"({prun.result.stats.get('events', 0):,} events)")
            print(_profile_report(profiler, args.top))
            if args.profile_out:
                profiler.dump_stats(args.profile_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
