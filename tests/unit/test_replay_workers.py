"""replay's reading workers: reading in other processes gives exactly what reading here gives.

The inputs are the repository's fixtures (scenarios, the region with its sources) and the tests'
own poison corpus, read in chunks of a few items, so that every input really goes through the
pool; the serial path (workers=1) is the oracle: same Bundle (less the decision times the clock
sets), same counters, same rejections in the same order, same dead letters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_engagement import replay as replay_module
from fhir_engagement.cli import main
from fhir_engagement.config import Settings
from fhir_engagement.model import Event
from fhir_engagement.ordering import EventOrder, pack
from fhir_engagement.pipeline import Engine, load_engine
from fhir_engagement.replay import ReplayResult, replay
from fhir_engagement.store.sqlite import SqliteStore
from tests.conftest import FIXTURES, SCENARIOS, without_decision_times

CORPUS = Path(__file__).parent.parent / "fuzz" / "corpus"
REGION = FIXTURES / "region"


@pytest.fixture
def pooled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Chunks of 3 items (so a small input still makes many), and how many went to the pool."""
    monkeypatch.setattr(replay_module, "_CHUNK_ITEMS", 3)
    sent: list[int] = []
    taken = replay_module._taken

    def counting(engine: Engine, chunk: list[Any], future: Any) -> Iterator[Any]:
        if future is not None:
            sent.append(len(chunk))
        return taken(engine, chunk, future)

    monkeypatch.setattr(replay_module, "_taken", counting)
    return sent


def _run(paths: list[Path], engine: Engine, folder: Path, workers: int) -> tuple[ReplayResult,
                                                                               list[Any]]:
    folder.mkdir()
    store = SqliteStore(str(folder / "state.sqlite3"))
    try:
        result = replay(paths, engine, store, workers=workers)
        letters = store.dead_letters()
    finally:
        store.close()
    return result, letters


def _same(paths: list[Path], engine: Engine, tmp_path: Path) -> ReplayResult:
    serial, serial_letters = _run(paths, engine, tmp_path / "serial", 1)
    pooled, pooled_letters = _run(paths, engine, tmp_path / "pooled", 2)
    assert serial.bundle is not None
    assert pooled.bundle is not None
    assert [_entry(e) for e in pooled.bundle["entry"]] == [_entry(e) for e in serial.bundle["entry"]]
    assert pooled.stats == serial.stats
    assert [(type(e), e.where, e.reason, e.raw) for e in pooled.rejected] == \
        [(type(e), e.where, e.reason, e.raw) for e in serial.rejected]
    assert pooled_letters == serial_letters
    return serial


def _entry(entry: dict[str, Any]) -> str:
    return json.dumps({**entry, "resource": without_decision_times(entry["resource"])},
                      sort_keys=True)


def test_the_scenarios_read_in_workers_give_the_serial_replay(
    engine: Engine, tmp_path: Path, pooled: list[int]
) -> None:
    serial = _same([SCENARIOS], engine, tmp_path)
    assert len(pooled) > 10  # the pool was used, chunk after chunk
    assert serial.stats["documents"] > 30
    assert serial.bundle["entry"]  # type: ignore[index]


def test_the_region_with_its_sources_read_in_workers_gives_the_serial_replay(
    tmp_path: Path, pooled: list[int]
) -> None:
    engine = load_engine(Settings.load(REGION / "settings.toml"))
    serial = _same([REGION], engine, tmp_path)
    assert pooled
    assert serial.stats["v2 messages"] > 0  # v2 items and their raw bytes go through the pool too


def test_poison_read_in_workers_is_rejected_as_it_is_here(
    engine: Engine, tmp_path: Path, pooled: list[int]
) -> None:
    # The fuzz corpus (numbers, years and unicode that once broke a reader), a 300-deep
    # extension in a Bundle orjson cannot write back (the stdlib writes it: model.resource_json),
    # JSON nested 10,000 deep (refused by orjson), and a file that is not there.
    poison = tmp_path / "poison"
    poison.mkdir()
    good = json.loads((SCENARIOS / "01-single-wnb-no-status" / "bundle.json").read_text())
    deep = '{"url":"u","extension":[' * 300 + "{}" + "]}" * 300
    appointment = good["entry"][1]["resource"]
    appointment["extension"] = ["DEEP"]
    (poison / "deep300.json").write_text(json.dumps(good).replace('"DEEP"', deep))
    (poison / "deep10000.json").write_text("[" * 10_000 + "]" * 10_000)
    (poison / "bad.json").write_text("{not json")
    serial = _same([CORPUS, poison, tmp_path / "missing.json"], engine, tmp_path)
    assert pooled
    assert len(serial.rejected) >= 4
    assert any("missing.json" in e.where for e in serial.rejected)


def test_one_chunk_of_input_is_read_here(engine: Engine, tmp_path: Path,
                                         pooled: list[int]) -> None:
    # Starting processes for a handful of lines would cost more than reading them.
    _same([SCENARIOS / "01-single-wnb-no-status"], engine, tmp_path)
    assert pooled == []


def test_a_read_a_worker_cannot_send_back_is_read_again_here(
    engine: Engine, tmp_path: Path, pooled: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one function mocked: the worker's pickling fails for every other item (as it would
    # for a resource nested deeper than pickle recurses); the parent reads those items itself.
    real = replay_module._sent
    calls = iter(range(1_000_000))
    monkeypatch.setattr(replay_module, "_sent",
                        lambda read: None if next(calls) % 2 else real(read))
    _same([SCENARIOS], engine, tmp_path)
    assert pooled


def test_workers_default_and_setting() -> None:
    assert replay_module.default_workers() in (1, 2)
    assert Settings(replay_workers=3).replay_workers == 3
    with pytest.raises(ValueError, match="replay_workers"):
        Settings(replay_workers=0)


def test_a_packed_event_sorts_and_comes_back_as_the_event_added() -> None:
    at = datetime(2026, 1, 5, 10, tzinfo=UTC)
    events = [Event(f"Appointment/{n % 3}", "Appointment", at - timedelta(minutes=n), "Patient/1",
                    None, {"status": frozenset({"s|noshow"})}, f"file {n}", version=str(n),
                    raw=orjson.dumps({"n": n})) for n in range(6)]
    with EventOrder(run_bytes=1) as added, EventOrder(run_bytes=1) as packed:
        for event in events:
            added.add(event, b"raw")
            made = pack(event, b"raw")
            assert made is not None
            packed.add_packed(made)
        assert [(e, e.raw, r) for e, r in packed] == [(e, e.raw, r) for e, r in added]
    # A resource nested deeper than orjson writes is bytes already (model.resource_json): it packs.
    deep = replace(events[0], raw=b'{"a":' * 300 + b"{}" + b"}" * 300)
    with EventOrder() as order:
        order.add_packed(pack(deep, None))
        [(back, _)] = list(order)
    assert (back, back.raw) == (deep, deep.raw)


def test_workers_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["replay", str(SCENARIOS), "--out", str(tmp_path / "b.json"), "--workers", "0"])
    assert refused.value.code == 2
    assert "1 or more" in capsys.readouterr().err
    store = str(tmp_path / "state.sqlite3")
    assert main(["replay", str(SCENARIOS), "--out", str(tmp_path / "b.json"), "--store", store,
                 "--workers", "2", "--quiet"]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["entry"]
