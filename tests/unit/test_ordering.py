"""ordering.py: the external sort gives replay's order, spilling to disk, leaving nothing behind;
an input that fits in one run is given the same order in memory."""

from __future__ import annotations

import random
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from fhir_engagement import ordering
from fhir_engagement.model import Event
from fhir_engagement.ordering import EventOrder, time_of

_DAWN = datetime(1, 1, 1, tzinfo=UTC)
ZONE = timezone(timedelta(hours=-5))


def _event(key: str, at: datetime | None, version: str = "", raw: object = None) -> Event:
    return Event(key, "Appointment", at, "Patient/1", None, {}, f"file {key} {version}",
                 version=version, raw=None if raw is None else orjson.dumps(raw))


def _in_memory(events: list[Event]) -> list[Event]:
    """The sort replay did in memory before ordering.py (the oracle): versions of one key in
    version order, each placed no earlier than the one before, then (placed, key, rank)."""
    chains: dict[str, list[int]] = {}
    for i, event in enumerate(events):
        chains.setdefault(event.key, []).append(i)
    order: list[tuple[datetime, str, int]] = [(_DAWN, "", 0)] * len(events)
    for key, members in chains.items():
        members.sort(key=lambda i: (events[i].version, time_of(events[i])))
        placed = _DAWN
        for rank, i in enumerate(members):
            placed = max(placed, time_of(events[i]))
            order[i] = (placed, key, rank)
    return [events[i] for i in sorted(range(len(events)), key=order.__getitem__)]


def test_a_correction_with_an_earlier_time_comes_after_what_it_corrects() -> None:
    # Worked by hand: A v1 at 10:00, its correction A v2 carries 09:00 but is placed at 10:00
    # (never before v1), rank 1; B at 09:30; C has no time and goes first (dawn).
    a1 = _event("Appointment/A", datetime(2026, 1, 5, 10, tzinfo=UTC), "1", {"id": "A", "n": 1})
    a2 = _event("Appointment/A", datetime(2026, 1, 5, 9, tzinfo=UTC), "2", {"id": "A", "n": 2})
    b = _event("Appointment/B", datetime(2026, 1, 5, 9, 30, tzinfo=UTC), "1")
    c = _event("Appointment/C", None)
    for run_bytes in (1, ordering._RUN_BYTES):  # every event spilled; none
        with EventOrder(run_bytes=run_bytes) as order:
            for event in (a2, b, a1, c):
                order.add(event, None)
            got = [e for e, _ in order]
        assert got == [c, b, a1, a2]
        # Event equality leaves the resource out: it must come back as it went in.
        assert [e.resource() for e in got] == [None, None, {"id": "A", "n": 1}, {"id": "A", "n": 2}]


def test_many_runs_give_the_in_memory_order_and_raw_items_come_back() -> None:
    rng = random.Random(15)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = []
    for n in range(3000):
        key = f"Appointment/{rng.randrange(800)}"
        at = None if rng.random() < 0.02 else start + timedelta(minutes=rng.randrange(5000))
        events.append(_event(key, at, str(rng.randrange(1, 4)), {"n": n, "nested": [{"a": n}]}))
    with EventOrder(run_bytes=20_000) as order:
        for n, event in enumerate(events):
            order.add(event, f"raw {n}".encode())
        assert len(list(order._folder.iterdir())) > 10  # spilled: many runs
        got = list(order)
    assert [e for e, _ in got] == _in_memory(events)
    assert all(raw == f"raw {e.resource()['n']}".encode() for e, raw in got)  # type: ignore[index]


def _mixed(count: int, seed: int) -> list[Event]:
    """Corrections (several versions of one key, some carrying earlier times than the version
    they correct), timeless events, equal times and a zone that is not UTC."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = []
    for n in range(count):
        key = f"Appointment/{rng.randrange(count // 4)}"
        at = None if rng.random() < 0.05 else start + timedelta(minutes=rng.randrange(300))
        if at is not None and rng.random() < 0.1:
            at = at.astimezone(ZONE)
        events.append(_event(key, at, str(rng.randrange(1, 4)), {"n": n}))
    return events


def _order(events: list[Event], run_bytes: int) -> tuple[list[tuple[Event, bytes | None]], int]:
    """The order read back, and how many runs were spilled on the way."""
    with EventOrder(run_bytes=run_bytes) as order:
        for n, event in enumerate(events):
            order.add(event, f"raw {n}".encode())
        got = list(order)
        return got, order._spilled


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_in_memory_and_spilled_give_the_same_order(seed: int) -> None:
    events = _mixed(2000, seed)
    held, held_runs = _order(events, ordering._RUN_BYTES)
    spilled, spilled_runs = _order(events, 50_000)
    assert held_runs == 0  # sorted in memory: nothing marshalled nor written
    assert spilled_runs > 10
    assert [e for e, _ in held] == [e for e, _ in spilled] == _in_memory(events)
    assert [(e.origin, e.raw, e.occurred, raw) for e, raw in held] == \
        [(e.origin, e.raw, e.occurred, raw) for e, raw in spilled]
    assert any(e.occurred is None for e, _ in held[:5])  # timeless events first
    assert len({e.key for e in events}) < len(events)  # with versions to place


def test_the_first_run_may_be_twice_the_others_then_runs_are_their_size() -> None:
    event = _event("Appointment/A", None, raw={"x": 1})
    size = ordering._EVENT_BYTES + len(event.raw or b"")
    with EventOrder(run_bytes=10 * size) as order:
        for _ in range(19):
            order.add(event, None)
        assert order._spilled == 0  # 19 runs' worth of a tenth: still in memory
        order.add(event, None)
        assert order._spilled == 1  # the twentieth fills the first run, twice the others
        for _ in range(10):
            order.add(event, None)
        assert order._spilled == 2
        assert len(list(order)) == 30


def test_packed_events_sorted_in_memory_come_back_whole() -> None:
    # What a reading worker sends (a blob) is unpacked when read, in or out of memory.
    events = _mixed(300, 4)
    with EventOrder() as order:
        for event in events:
            order.add_packed(ordering.pack(event, b"item"))
        got = list(order)
        assert order._spilled == 0
    assert [e for e, _ in got] == _in_memory(events)
    assert [e.raw for e, _ in got] == [e.raw for e in _in_memory(events)]
    assert {raw for _, raw in got} == {b"item"}


def test_spill_files_are_private_and_removed() -> None:
    with EventOrder(run_bytes=1) as order:
        order.add(_event("Appointment/A", None, raw={"x": 1}), None)
        order._spill()
        runs = list(order._folder.iterdir())
        assert runs
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in runs)
        assert stat.S_IMODE(order._folder.stat().st_mode) == 0o700
        folder = order._folder
    assert not folder.exists()


def test_an_event_nested_deeper_than_orjson_writes_is_spilled_and_comes_back() -> None:
    # Its resource is bytes already (model.resource_json wrote it), so it spills like any other.
    deep = b'{"x":' * 300 + b"{}" + b"}" * 300
    event = replace(_event("Appointment/D", datetime(2026, 1, 1, tzinfo=UTC)), raw=deep)
    with EventOrder(run_bytes=1) as order:
        order.add(event, None)
        [(got, _)] = list(order)
        assert order._spilled == 2  # spilled, then re-spilled in the second pass
    assert got.raw == deep
    assert got.resource() == orjson.loads(deep)


def test_every_field_comes_back_as_it_went_in_whatever_the_zone() -> None:
    # Events are marshalled with their time as ISO text when that keeps the zone (UTC, a fixed
    # offset, no zone), and pickled otherwise (a named offset, an IANA zone): either way the
    # pipeline must see the same values, of the same types, in the same zone.
    from datetime import timezone
    from zoneinfo import ZoneInfo

    zones = [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5), "EST"),
             ZoneInfo("Europe/London"), None]
    events = []
    for n, zone in enumerate(zones):
        at = datetime(2026, 3, 29, 0, 30, 15, 123456, tzinfo=zone)
        events.append(Event(
            f"Appointment/{n}", "Appointment", at, "Patient/1",
            {"reference": "Patient/1", "identifier": {"value": "9434765919"}},
            {"status": frozenset({"s|noshow"}), "class": frozenset()}, f"file {n}",
            source="src", provider="RJ1", service="svc", performer={"reference": "P/1"},
            version="2", raw=orjson.dumps({"id": str(n), "x": [1, 2.5, None, True]}),
            focus={"identifier": {"value": "V1"}}, identifiers=("a", "b")))
    events.append(_event("Appointment/none", None, raw={"id": "none"}))
    with EventOrder() as order:
        for event in events:
            order.add(event, b"raw")
        got = {e.key: e for e, raw in order}
    for event in events:
        back = got[event.key]
        assert back == event
        assert back.raw == event.raw
        assert type(back.subject) is type(event.subject)
        assert back.identifiers == event.identifiers
        assert isinstance(back.slots.get("status", frozenset()), frozenset)
        if event.occurred is None:
            assert back.occurred is None
            continue
        assert back.occurred is not None
        assert back.occurred.replace(tzinfo=None) == event.occurred.replace(tzinfo=None)
        assert back.occurred.tzinfo == event.occurred.tzinfo
        assert back.occurred.tzname() == event.occurred.tzname()
        assert back.occurred.utcoffset() == event.occurred.utcoffset()
