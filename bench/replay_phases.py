"""Where a replay's time goes, by phase, measured by sampling rather than by cProfile.

cProfile charges every Python call its own overhead, so it inflates small functions 3-6x and
the profile of a replay (millions of small calls) misstates the shares. py-spy samples the
running process's stack from outside (100 times a second here), so each phase's share of the
samples is its share of the wall time. This script runs ``fhir-engagement replay`` from the
command line (what an operator runs: fresh SQLite store, Bundle written) under py-spy, sorts
every sample into a phase by the frames on its stack, and prints each phase's share and seconds.

py-spy is a bench tool, not a dependency of the adapter: ``.venv/bin/pip install -e ".[bench]"``.

    .venv/bin/python bench/replay_phases.py --n 100000          # replay_bench's data
    .venv/bin/python bench/replay_phases.py --data DIR           # an existing folder
    .venv/bin/python bench/replay_phases.py --n 20000 --workers 2

With ``--workers`` > 1 the reading workers are sampled too (``--subprocesses``); their samples
are shown apart, as "worker: ...", since they run beside the main process, not before it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fhir_engagement.replay import default_workers
from replay_bench import SEED, Generator  # the benchmark's data, the same seed

_END = datetime(2025, 11, 1, tzinfo=UTC)  # replay_bench's, so the data are its own

# (phase, frames that must all be on the stack), first match wins; frames are "function (file"
# prefixes as py-spy writes them, so a renamed function shows up as "other", not as a wrong phase.
_PROCESSING: list[tuple[str, tuple[str, ...]]] = [
    ("process: input validation (what is acted on)", ("validate_input (",)),
    ("process: output validation", ("_put (", "check (fhir_engagement/decisions/validate.py")),
    ("process: store writes (outputs, deliveries)", ("_write (", "store/")),
    ("process: building Flags, Tasks, Provenance", ("_write (",)),
    ("process: deciding (history, status, rules)", ("_decide (",)),
    ("process: store writes (history rows)", ("add_signal (",)),
    ("process: child and age", ("_child (",)),
    ("process: twins (v2 and FHIR of one event)", ("_canonical (",)),
    ("process: signals", ("extract (",)),
    ("process: read-ahead of lookups", ("prefetch (",)),
]
_READING: list[tuple[str, tuple[str, ...]]] = [
    ("read: files", ("iter_items (",)),
    ("read: JSON, Reader, v2 parser", ("read (fhir_engagement/ingest/records.py",)),
    ("read: context (Patients, status)", ("_context (",)),
    ("read: into the external sort", ("fhir_engagement/ordering.py",)),
    ("read: workers' results taken back", ("_taken (",)),
]


def phase(stack: str) -> str:
    """The phase of one sample, from its ``;``-joined frames (outermost first)."""
    if "_read_chunk (" in stack:
        return "worker: " + _first(stack, _READING, "reading")
    if "_read (fhir_engagement/replay.py" in stack:
        return _first(stack, _READING, "read: other")
    if "_process (fhir_engagement/replay.py" in stack:
        if "process_guarded (" not in stack and "fhir_engagement/ordering.py" in stack:
            return "sort: merged back from disk"
        return _first(stack, _PROCESSING, "process: other")
    for name, marks in (("commit", ("commit (",)), ("counting outputs", ("_stats (",)),
                        ("Bundle written", ("write_bundle (",)),
                        ("start-up", ("load_engine (",)), ("start-up", ("<module> (",))):
        if all(mark in stack for mark in marks):
            return name
    return "other"


def _first(stack: str, table: list[tuple[str, tuple[str, ...]]], default: str) -> str:
    return next((name for name, marks in table if all(m in stack for m in marks)), default)


def shares(raw: Path) -> Counter[str]:
    """Samples per phase from py-spy's raw output (one ``stack count`` line per stack)."""
    found: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            found[phase(stack)] += int(count)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="events to generate")
    parser.add_argument("--data", type=Path, help="replay this folder instead of generating")
    parser.add_argument("--workers", type=int, default=1,
                        help=f"reading processes (default 1: phases in sequence; CLI's: "
                             f"{default_workers()})")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is needed: .venv/bin/pip install -e '.[bench]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="replay-phases-") as tmp:
        work = Path(tmp)
        data = args.data or work / "data"
        if args.data is None:
            data.mkdir(parents=True)
            export = Generator(SEED, _END).write(data, args.n, max(args.n // 10, 1))
            print(f"generated {export.events:,} events into {data}")
        raw = work / "samples.txt"
        cli = Path(sys.executable).parent / "fhir-engagement"
        command = [spy, "record", "--rate", str(args.rate), "--format", "raw", "--output",
                   str(raw), *(["--subprocesses"] if args.workers > 1 else []), "--",
                   str(cli), "replay", str(data), "--store", str(work / "store.sqlite3"),
                   "--out", str(work / "bundle.json"), "--workers", str(args.workers), "--quiet"]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - began
        if done.returncode != 0 or not raw.exists():
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        _report(shares(raw), wall, args)
    return 0


def _report(found: Counter[str], wall: float, args: argparse.Namespace) -> None:
    main_total = sum(v for k, v in found.items() if not k.startswith("worker: "))
    print(f"\nreplay under py-spy: {wall:.1f} s wall (sampling adds ~1-3%), "
          f"{main_total:,} samples of the main process, --workers {args.workers}\n")
    print(f"{'phase':48s} {'share':>6s} {'seconds':>8s}")
    for name, count in sorted(found.items(), key=lambda kv: (kv[0].startswith("worker"), -kv[1])):
        share = count / main_total if main_total else 0.0
        print(f"{name:48s} {100 * share:5.1f}% {share * wall:8.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
