"""The FHIR Reader alone: CPU time per resource type, on kept data and any FHIR files.

Every item is read into memory first, so no file I/O is timed. Three figures, each the best of
``--repeat`` runs of ``time.process_time`` (CPU, not wall: the machine is shared):

* ``orjson.loads`` of every FHIR item (the floor the Reader adds to);
* ``Readers.read`` of every item (parse + walk + records, the replay bench's reading stage);
* ``Reader.read`` of already parsed documents, grouped by the document's resourceType, in
  microseconds per document (the walk alone).

``--dump FILE`` also writes what was read (records, and rejections as where + reason) to a pickle,
so two versions of the Reader can be compared on the same inputs with ``--compare A B``.

Run: ``.venv/bin/python bench/reader_bench.py KEPT/data /work/shared/realdata tests/fixtures``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from fhir_engagement.config import Settings
from fhir_engagement.ingest.files import iter_items
from fhir_engagement.ingest.records import Kind, RawItem
from fhir_engagement.pipeline import load_engine

sys.path.insert(0, str(Path(__file__).parent))
from replay_bench import best_of  # the bench folder, not a package


def _fhir_items(paths: list[Path]) -> list[RawItem]:
    items = [i for i in iter_items(paths) if isinstance(i, RawItem) and i.kind is Kind.FHIR]
    return [i for i in items if _parse(i.data) is not None]


def _parse(data: bytes) -> Any:
    try:
        return orjson.loads(data.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError:
        return None


_ODD_VALUES: tuple[Any, ...] = (None, 0, 1.5, True, "", " x ", "#c", "urn:uuid:1", "Patient?x=1",
                                "0001-01-01", "2025-13-40T25:00:00Z", [], [1], ["x"], {}, {"a": 1},
                                {"reference": 1}, {"coding": "x"}, {"coding": [{"code": 1}]},
                                [{"code": []}], [{"concept": {"concept": {}}}])


def _mutants(data: bytes, count: int, rng: random.Random) -> list[bytes]:
    """``count`` copies of a document, each with one value somewhere swapped for an odd one (a
    wrong type, a bad date, a broken reference): the input the Reader's named errors are for."""
    doc = _parse(data)
    paths: list[tuple[Any, Any]] = []
    level = [doc]
    while level and len(paths) < 5_000:
        below = []
        for node in level:
            keys = node.keys() if isinstance(node, dict) else range(len(node))
            for key in keys:
                paths.append((node, key))
                if isinstance(node[key], dict | list):
                    below.append(node[key])
        level = below
    out = []
    for _ in range(count if paths else 0):
        node, key = rng.choice(paths)
        old, node[key] = node[key], rng.choice(_ODD_VALUES)
        out.append(orjson.dumps(doc))
        node[key] = old
    return out


def _outcome(read: Any) -> list[Any]:
    """What one item gave, comparable across versions (an exception compares by identity)."""
    return [*read.records, *((type(e).__name__, e.where, e.reason) for e in read.rejected)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", type=Path, nargs="*")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dump", type=Path, help="write what was read here (a pickle)")
    parser.add_argument("--mutants", type=int, default=0,
                        help="with --dump: also this many mutated copies of each document")
    parser.add_argument("--compare", type=Path, nargs=2, help="two --dump files: equal?")
    args = parser.parse_args(argv)
    if args.compare:
        return _compare(*args.compare)

    items = _fhir_items(args.paths)
    with tempfile.TemporaryDirectory() as tmp:
        engine = load_engine(Settings(store=str(Path(tmp) / "bench.sqlite3")))
    readers, reader = engine.records, engine.records.fhir
    if args.dump and args.mutants:
        rng = random.Random(20261204)
        items = [*items, *(RawItem(Kind.FHIR, data, f"{item.where} mutant {n}")
                           for item in items if isinstance(_parse(item.data), dict)
                           for n, data in enumerate(_mutants(item.data, args.mutants, rng)))]
    if args.dump:
        outcomes = {item.where: _outcome(readers.read(item)) for item in items}
        # 0600 from the start: the records hold the input's content
        with os.fdopen(os.open(args.dump, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            out.write(pickle.dumps(outcomes))
    groups: dict[str, list[tuple[Any, str, str | None]]] = defaultdict(list)
    for item in items:
        doc = _parse(item.data)
        kind = doc.get("resourceType") if isinstance(doc, dict) else None
        groups[kind if isinstance(kind, str) else "(not a resource)"].append(
            (doc, item.where, reader.sources.for_file(item.origin)))

    def walk(docs: list[tuple[Any, str, str | None]]) -> None:
        for doc, where, namespace in docs:
            for _ in reader.read(doc, where, namespace):
                pass

    def loads() -> None:
        for item in items:  # nothing kept: a growing heap would time the cyclic GC instead
            _parse(item.data)

    def stage() -> None:
        for item in items:
            readers.read(item)

    loads_s = best_of(args.repeat, loads, time.process_time)
    stage_s = best_of(args.repeat, stage, time.process_time)
    print(f"{len(items):,} FHIR items from {', '.join(map(str, args.paths))}")
    print(f"  orjson.loads      {loads_s:8.3f} s CPU")
    print(f"  Readers.read      {stage_s:8.3f} s CPU  ({stage_s / loads_s:.1f}x the loads)")
    total = 0.0
    for kind, docs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        seconds = best_of(args.repeat, lambda docs=docs: walk(docs), time.process_time)
        total += seconds
        print(f"  walk {kind:24} {len(docs):7,} docs {seconds:8.3f} s "
              f"{seconds / len(docs) * 1e6:9.1f} us/doc")
    print(f"  walk (all)        {total:8.3f} s CPU")
    return 0


def _compare(first: Path, second: Path) -> int:
    a, b = pickle.loads(first.read_bytes()), pickle.loads(second.read_bytes())
    differ = [where for where in a.keys() | b.keys() if a.get(where) != b.get(where)]
    print(f"{len(a):,} / {len(b):,} items; {sum(len(v) for v in a.values()):,} outcomes; "
          f"{len(differ)} differ")
    for where in sorted(differ)[:10]:
        print(f"  {where}:\n    {a.get(where)!r}\n    {b.get(where)!r}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
