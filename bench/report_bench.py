"""Report benchmark: the issue-5 reports on 100,000 synthetic appointments (goal: seconds).

What it measures, on the synthetic export of ``replay_bench.py`` (same generator, fixed seed):

* the data: N Appointments (default 100,000; 10% noshow, some cancelled by the family, home
  visits, 7 booking organisations, two years, ~8% adults) plus ``--encounters`` Encounters
  (default 30% of N: emergency attendances feed the over-engagement pattern), for N/10 patients;
* the replay that fills a fresh SQLite file store (timed for context, not the goal);
* opening that store as a report does (its in-memory indexes are loaded);
* in-process, best of ``--repeat``: ``rate_report`` and its text, CSV and SVG; ``mix_report`` and
  its text, CSV and SVG; the chronology of the most-seen child (audit row, text and Bundle); the
  whole dashboard page;
* the command line end to end (``fhir-engagement report rate|mix|chronology``, one run each):
  interpreter start, loading the mappings and rules, opening the store, the report.

Run from the repository root:

    .venv/bin/python bench/report_bench.py --n 100000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

from fhir_engagement.config import Settings
from fhir_engagement.pipeline import load_engine
from fhir_engagement.replay import replay
from fhir_engagement.reports import open_report_store
from fhir_engagement.reports.charts import mix_chart, rate_chart
from fhir_engagement.reports.chronology import chronology_bundle, chronology_text, open_chronology
from fhir_engagement.reports.dashboard import dashboard_html
from fhir_engagement.reports.mix import mix_csv, mix_report, mix_text
from fhir_engagement.reports.rates import rate_csv, rate_report, rate_text
from fhir_engagement.store import open_store
from replay_bench import SEED, Export, Generator, _machine, _table


def write_export(folder: Path, n: int, encounters: int, patients: int, seed: int) -> tuple[
        Export, str]:
    """Patients, N Appointments and some Encounters as NDJSON; returns the export and the NHS
    number of the child seen most often (whose chronology is the longest)."""
    gen = Generator(seed, datetime(2025, 11, 1, tzinfo=UTC))
    children = gen.children(patients)
    export = Export(folder, 0, 0, 0)
    with (folder / "Patient.ndjson").open("wb") as out:
        for child in children:
            gen._line(out, gen.patient(child), export)
    weights = [c.weight for c in children]
    with (folder / "Appointment.ndjson").open("wb") as out:
        for number, child in enumerate(gen.rng.choices(children, weights, k=n), start=1):
            gen._line(out, gen.appointment(child, number), export)
    with (folder / "Encounter.ndjson").open("wb") as out:
        for number, child in enumerate(gen.rng.choices(children, weights, k=encounters),
                                       start=n + 1):
            gen._line(out, gen.encounter(child, number), export)
    export.events = n + encounters
    busiest = max((c for c in children if c.birth.year >= 2008), key=lambda c: c.weight)
    return export, busiest.nhs


def best(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def cli(*args: str) -> tuple[float, int]:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fhir_engagement", *args], capture_output=True,
                          check=False, env={**os.environ, "PYTHONWARNINGS": "error"})
    return time.perf_counter() - began, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="Appointments (default 100000)")
    parser.add_argument("--encounters", type=int, help="Encounters (default 30%% of --n)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--keep", type=Path, help="write the data and store here, and keep them")
    args = parser.parse_args(argv)
    encounters = args.n * 3 // 10 if args.encounters is None else args.encounters

    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        work = args.keep or Path(tmp)
        data = work / "data"
        data.mkdir(parents=True, exist_ok=True)
        export, nhs = write_export(data, args.n, encounters, max(args.n // 10, 1), args.seed)
        print(f"generated {export.kinds['Appointment']:,} Appointments, "
              f"{export.kinds['Encounter']:,} Encounters, {export.kinds['Patient']:,} Patients",
              file=sys.stderr)
        path = work / "reports.sqlite3"
        for old in work.glob("reports.sqlite3*"):
            old.unlink()
        engine = load_engine(Settings(store=str(path)))
        tz = ZoneInfo(engine.rules.timezone)
        store = open_store(str(path))
        print("replaying ...", file=sys.stderr)
        began = time.perf_counter()
        replay([data], engine, store)
        replay_s = time.perf_counter() - began
        store.close()

        began = time.perf_counter()
        store = open_report_store(str(path))
        open_s = time.perf_counter() - began
        rates = rate_report(store, tz)
        mix = mix_report(store, tz)
        rate_s = best(args.repeat, lambda: rate_report(store, tz))
        rate_out_s = best(args.repeat, lambda: (rate_text(rates), rate_csv(rates),
                                                rate_chart(rates)))
        mix_s = best(args.repeat, lambda: mix_report(store, tz))
        mix_out_s = best(args.repeat, lambda: (mix_text(mix, engine.systems), mix_csv(mix),
                                               mix_chart(mix)))
        chron = open_chronology(store, nhs, engine.systems, "report-bench", "bench")
        chron_s = best(args.repeat, lambda: open_chronology(store, nhs, engine.systems,
                                                            "report-bench", "bench"))
        chron_out_s = best(args.repeat, lambda: (chronology_text(chron, engine.systems, tz),
                                                 orjson.dumps(chronology_bundle(
                                                     chron, engine.systems))))
        page_s = best(args.repeat, lambda: dashboard_html(store, tz, engine.systems))
        store.close()

        cli_rate = cli("report", "rate", "--store", str(path))
        cli_mix = cli("report", "mix", "--store", str(path))
        cli_chron = cli("report", "chronology", "--patient", nhs, "--store", str(path),
                        "--requested-by", "report-bench")

        appointments = sum(r.appointments for r in rates.rows)
        missed = sum(r.not_brought for r in rates.rows)
        adults = sum(r.adults_excluded for r in rates.rows)
        print()
        print(_table("machine", _machine()))
        print()
        print(_table(f"data (seed {args.seed})", [
            ("input", f"{export.kinds['Appointment']:,} Appointments, "
                      f"{export.kinds['Encounter']:,} Encounters, "
                      f"{export.kinds['Patient']:,} Patients"),
            ("rate", f"{appointments:,} child appointments with an outcome, {missed:,} not "
                     f"brought ({missed / max(appointments, 1):.1%}), {adults:,} adults "
                     f"excluded; {len(rates.providers())} providers x "
                     f"{len(rates.quarters())} quarters"),
            ("mix", f"{len(mix.quarters)} quarters, "
                    f"{sum(sum(q.tasks.values()) for q in mix.quarters):,} Tasks, "
                    f"{sum(sum(q.flags.values()) for q in mix.quarters):,} Flags"),
            ("chronology", f"{len(chron.entries):,} entries, {len(chron.resources):,} resources "
                           "(the most-seen child)"),
            ("store", f"{sum(p.stat().st_size for p in work.glob('reports.sqlite3*')) / 1e6:,.1f}"
                      " MB"),
        ]))
        print()
        print(_table(f"timings (in-process: best of {args.repeat})", [
            ("replay into the store (context)", f"{replay_s:8.2f}s"),
            ("open the store (indexes)", f"{open_s:8.2f}s"),
            ("rate_report", f"{rate_s:8.3f}s"),
            ("  text + CSV + SVG", f"{rate_out_s:8.3f}s"),
            ("mix_report", f"{mix_s:8.3f}s"),
            ("  text + CSV + SVG", f"{mix_out_s:8.3f}s"),
            ("open_chronology (incl. audit commit)", f"{chron_s:8.3f}s"),
            ("  text + Bundle", f"{chron_out_s:8.3f}s"),
            ("dashboard page (both reports + charts)", f"{page_s:8.3f}s"),
            ("CLI: report rate (end to end)", f"{cli_rate[0]:8.2f}s  exit {cli_rate[1]}"),
            ("CLI: report mix (end to end)", f"{cli_mix[0]:8.2f}s  exit {cli_mix[1]}"),
            ("CLI: report chronology (end to end)", f"{cli_chron[0]:8.2f}s  exit {cli_chron[1]}"),
        ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
