"""The MLLP inbox reads a message once: the reading made to answer AA goes to the worker.

A real SQLite store. The outputs must be the same whether the worker takes the held reading
or reads the kept bytes again (as after a restart, or past the bound on held readings), and
the reader must run once per message while the worker keeps up.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fhir_engagement.ingest.records import Readers
from fhir_engagement.live import v2_inbox
from fhir_engagement.live.v2_inbox import V2Inbox
from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.store import SqliteStore
from tests.conftest import without_decision_times
from tests.hl7v2.messages import nhs_number, siu

ORIGIN = "mllp:2575"


def _messages(children: int) -> list[bytes]:
    """Two no-shows for each child, weeks apart: decisions (Flags, Tasks) to compare."""
    out = []
    for c in range(children):
        for n, when in enumerate(("20260302100000", "20260330100000")):
            out.append(siu("S26", f"m{c}-{n}", f"A{c}-{n}", when, nhs_number(c + 40),
                           status="Noshow"))
    return out


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the v2 reader ran (the one function watched; it still reads)."""
    calls = [0]
    real = Readers.read

    def read(self: Readers, item: object) -> object:
        calls[0] += 1
        return real(self, item)  # type: ignore[arg-type]

    monkeypatch.setattr(Readers, "read", read)
    return calls


async def _accept_all(inbox: V2Inbox, messages: list[bytes]) -> None:
    for raw in messages:
        ack, fresh = await inbox.accept(raw, ORIGIN)
        assert fresh
        assert b"MSA|AA|" in ack


async def _drain(inbox: V2Inbox) -> None:
    while await inbox.drain(100):
        pass


def _outputs(store: SqliteStore) -> list[tuple[str, dict[str, object]]]:
    rows = [r for kind in ("Flag", "Task", "Provenance") for r in store.outputs_of_kind(kind)]
    assert rows  # the no-shows decided something
    return sorted((r.id, without_decision_times(orjson.loads(r.resource))) for r in rows)


async def test_held_readings_give_the_outputs_a_second_reading_gives(
    engine: Engine, tmp_path: Path, counted_reads: list[int]
) -> None:
    messages = _messages(20)
    held = SqliteStore(str(tmp_path / "held.sqlite3"))
    inbox = V2Inbox(Pipeline(engine, held, held.start_run("held")))
    await _accept_all(inbox, messages)
    await _drain(inbox)
    assert counted_reads[0] == len(messages)  # once each: on arrival only

    again = SqliteStore(str(tmp_path / "again.sqlite3"))
    await _accept_all(V2Inbox(Pipeline(engine, again, again.start_run("a"))), messages)
    restarted = V2Inbox(Pipeline(engine, again, again.start_run("b")))  # holds no readings
    await _drain(restarted)
    assert counted_reads[0] == 3 * len(messages)  # on arrival, and again by the worker
    assert _outputs(held) == _outputs(again)
    assert held.inbox_depth()[0] == again.inbox_depth()[0] == 0
    held.close()
    again.close()


async def test_past_the_bound_the_oldest_are_read_again_and_all_are_processed(
    engine: Engine, store: SqliteStore, counted_reads: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(v2_inbox, "_READS_KEPT", 10)
    messages = _messages(8)  # 16 messages: the 6 oldest readings are let go
    inbox = V2Inbox(Pipeline(engine, store, store.start_run("bound")))
    await _accept_all(inbox, messages)
    await _drain(inbox)
    assert counted_reads[0] == len(messages) + 6
    assert store.inbox_depth()[0] == 0
    assert store.outputs_of_kind("Task")


async def test_a_duplicate_is_acknowledged_but_not_held_again(
    engine: Engine, store: SqliteStore, counted_reads: list[int]
) -> None:
    raw = _messages(1)[0]
    inbox = V2Inbox(Pipeline(engine, store, store.start_run("dup")))
    assert (await inbox.accept(raw, ORIGIN))[1]
    assert not (await inbox.accept(raw, ORIGIN))[1]  # the same MSH-10: acknowledged, not new
    await _drain(inbox)
    assert counted_reads[0] == 2  # the two arrivals; the worker used the first one's reading
    assert store.inbox_depth()[0] == 0
