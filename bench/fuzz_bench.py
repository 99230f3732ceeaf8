"""Fuzz benchmark: each input parser's fuzz property over N generated cases, and a linear-time check.

Runs the properties of tests/fuzz/properties.py (FHIR reader on arbitrary and mutated documents,
v2 parser + mapping on mutated messages and arbitrary bytes, the notification classifier, MLLP
framing) for ``--n`` cases each (default 100,000) from a seeded generator, so a run is
repeatable. For each it prints cases, crashes (any exception but an InputError, or a record
unsafe downstream), hangs (a case over 1 s; a case still running after 10 s is stopped) and
seconds. Then it times ``parse_message`` + ``read_v2`` on 1k, 8k and 32k PID-3 repetitions and
prints the time per repetition, which stays flat when parsing is linear.

Run from the repository root:

    .venv/bin/python bench/fuzz_bench.py --n 100000
    .venv/bin/python bench/fuzz_bench.py --n 2000 --only v2-mutated
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fuzz, from the repo root

from tests.fuzz.properties import PROPERTIES, v2_mappings

from fhir_engagement.ingest.hl7v2 import read_v2
from fhir_engagement.ingest.v2parse import parse_message

HANG = 1.0  # seconds: a case slower than this is a hang
STOP = 10.0  # seconds: a case still running is interrupted and counted as a hang


class _Stopped(BaseException):
    """Raised by the alarm in a case that runs past STOP (a BaseException: no parser catches it)."""


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise _Stopped


def run_property(name: str, n: int, seed: int) -> dict[str, Any]:
    """N cases of one property: counts, crashes (first few shown), hangs, seconds."""
    generate, check = PROPERTIES[name]
    rng = random.Random(f"{seed}:{name}")
    outcomes: Counter[str] = Counter()
    crashes = hangs = 0
    worst = 0.0
    started = time.perf_counter()
    for _ in range(n):
        case = generate(rng)
        signal.setitimer(signal.ITIMER_REAL, STOP)
        t0 = time.perf_counter()
        try:
            outcomes[check(case)] += 1
        except _Stopped:
            hangs += 1
            outcomes["stopped"] += 1
            continue
        except Exception:  # any escape is a crash: that is what is being counted
            crashes += 1
            if crashes <= 3:
                print(f"  crash in {name}: {_show(case)}\n{traceback.format_exc(limit=4)}")
            continue
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        took = time.perf_counter() - t0
        worst = max(worst, took)
        hangs += took > HANG
    return {"name": name, "cases": n, "crashes": crashes, "hangs": hangs,
            "seconds": time.perf_counter() - started, "worst": worst, "outcomes": outcomes}


def _show(case: Any) -> str:
    try:
        return repr(case)[:300]
    except RecursionError:  # the case is nested too deep to print: that may be the crash
        return f"a {type(case).__name__} nested too deep to print"


def linear_check(sizes: tuple[int, ...] = (1000, 8000, 32000)) -> None:
    """parse_message + read_v2 on growing PID-3 repetition counts: time per repetition."""
    print("\nPID-3 repetitions   bytes      parse+map s   us per repetition")
    for reps in sizes:
        ids = "~".join(f"{i}^^^RXQ^MR" for i in range(reps))
        raw = (f"MSH|^~\\&|PAS|RXQ|A|B|20260520100000||SIU^S26^SIU_S12|C1|P|2.5.1\r"
               f"SCH|A1|A1|||||||60|MIN|^^60^20260520100000\rPID|1||{ids}||T^C||20150601|F\r").encode()
        best = min(_time_once(raw) for _ in range(5))
        print(f"{reps:>17,}   {len(raw):>9,}   {best:>11.4f}   {best / reps * 1e6:>17.2f}")


def _time_once(raw: bytes) -> float:
    t0 = time.perf_counter()
    read_v2(parse_message(raw), v2_mappings(), "bench")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="cases per property")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--only", choices=sorted(PROPERTIES), action="append")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    print(f"{'property':<15} {'cases':>8} {'crashes':>8} {'hangs':>6} {'seconds':>8} {'worst s':>8}"
          "  outcomes")
    failed = 0
    for name in args.only or PROPERTIES:
        r = run_property(name, args.n, args.seed)
        failed += r["crashes"] + r["hangs"]
        top = ", ".join(f"{k} {v}" for k, v in r["outcomes"].most_common(4))
        print(f"{name:<15} {r['cases']:>8,} {r['crashes']:>8} {r['hangs']:>6} {r['seconds']:>8.1f} "
              f"{r['worst']:>8.3f}  {top}", flush=True)
    linear_check()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
