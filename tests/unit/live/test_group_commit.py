"""Pushes that arrive together are kept in one commit, each answered only after it (a real
SQLite file; what is kept is read back on a connection of its own, as after a crash)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from fhir_engagement.errors import StoreError
from fhir_engagement.live.fhir_inbox import FhirInbox
from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.store import SqliteStore


class WatchedStore(SqliteStore):
    """A real store that counts its commits, and can be made to fail one (a disk gone full)
    or to refuse one push's put."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.commits, self.fail_commit, self.refuse = 0, False, b""

    def commit(self) -> None:
        if self.fail_commit:
            raise StoreError("cannot commit: disk full")
        super().commit()
        self.commits += 1

    def inbox_put(self, channel: str, sender: str, control_id: str, origin: str,
                  raw: bytes) -> bool:
        if self.refuse and raw == self.refuse:
            raise StoreError("cannot keep this one")
        return super().inbox_put(channel, sender, control_id, origin, raw)


def _body(i: int) -> bytes:
    return orjson.dumps({"resourceType": "Appointment", "id": f"g{i}", "status": "booked",
                         "start": "2026-03-02T10:00:00Z"})


def _kept(location: str) -> int:
    with sqlite3.connect(location) as db:  # not the writer's connection: only what is committed
        return int(db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0])


@pytest.fixture
def inbox(engine: Engine, tmp_path: Path) -> Iterator[FhirInbox]:
    store = WatchedStore(str(tmp_path / "g.sqlite3"))
    yield FhirInbox(Pipeline(engine, store, store.start_run("group")), None)
    store.fail_commit = False
    store.close()


def _store(inbox: FhirInbox) -> WatchedStore:
    assert isinstance(inbox.store, WatchedStore)
    return inbox.store


async def test_pushes_arriving_together_share_one_commit_and_each_returns_after_it(
    inbox: FhirInbox,
) -> None:
    store, before = _store(inbox), _store(inbox).commits

    async def push(i: int) -> int:
        await inbox.accept(_body(i), f"http PUT /notify/Appointment/g{i}", "Appointment", f"g{i}")
        return _kept(store.location)  # at the moment this push is answered

    seen = await asyncio.gather(*(push(i) for i in range(20)))
    assert store.commits - before == 1
    assert seen == [20] * 20  # every one was durable before any was answered
    await inbox.accept(_body(20), "http PUT /notify/Appointment/g20", "Appointment", "g20")
    assert store.commits - before == 2  # alone, it is its own group
    assert _kept(store.location) == 21


async def test_a_failed_commit_fails_every_push_of_its_group(inbox: FhirInbox) -> None:
    _store(inbox).fail_commit = True
    answers = await asyncio.gather(*(inbox.accept(_body(i), "http POST /notify") for i in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(a, StoreError) for a in answers)
    assert _kept(_store(inbox).location) == 0


async def test_one_push_the_store_refuses_fails_alone(inbox: FhirInbox) -> None:
    _store(inbox).refuse = _body(2)
    answers = await asyncio.gather(*(inbox.accept(_body(i), "http POST /notify") for i in range(5)),
                                   return_exceptions=True)
    assert [isinstance(a, StoreError) for a in answers] == [False, False, True, False, False]
    assert _kept(_store(inbox).location) == 4


async def test_a_resend_in_the_same_group_is_a_duplicate(inbox: FhirInbox) -> None:
    await asyncio.gather(*(inbox.accept(_body(7), "http POST /notify") for _ in range(3)))
    assert (inbox.stats["received"], inbox.stats["duplicates"]) == (1, 2)
    assert _kept(_store(inbox).location) == 1
