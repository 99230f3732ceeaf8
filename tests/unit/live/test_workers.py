"""The two guards of the live workers: per item (quarantine) and per worker (supervision)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_engagement.errors import StoreError
from fhir_engagement.live.workers import Supervisor, drain_items, wake_on_decisions
from fhir_engagement.store import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "w.sqlite3"))
    for n in range(3):
        s.inbox_put("fhir", "push", f"k{n}", f"http POST /notify #{n}", f"body {n}".encode())
    s.commit()
    yield s
    s.close()


async def test_a_failing_item_is_rolled_back_retried_then_quarantined_and_the_rest_go_on(
    store: SqliteStore,
) -> None:
    seen: list[str] = []

    async def handle(origin: str, raw: bytes) -> None:
        store.set_meta(f"partial {raw.decode()}", "written before the failure")
        if raw == b"body 1":
            raise KeyError("poison")
        seen.append(raw.decode())

    stats: Counter[str] = Counter()
    for _ in range(3):
        await drain_items(store, "fhir", 10, handle, stats, max_attempts=3)
    assert seen == ["body 0", "body 2"]  # the others were never held up
    assert store.meta("partial body 1") is None  # its partial writes were rolled back
    assert store.meta("partial body 0") is not None
    ((origin, reason, raw),) = store.dead_letters()
    assert (origin, raw) == ("http POST /notify #1", b"body 1")
    assert reason == "quarantined after 3 failed attempts: processing failed (KeyError)"
    assert [r.state for r in store.inbox_rows(("done", "quarantined"))] == [
        "done", "quarantined", "done"]
    assert store.inbox_depth()[0] == 0
    assert stats["inbox items quarantined"] == 1


async def test_a_store_error_goes_up_and_leaves_the_item_pending(store: SqliteStore) -> None:
    async def handle(origin: str, raw: bytes) -> None:
        raise StoreError("database or disk is full")

    with pytest.raises(StoreError):
        await drain_items(store, "fhir", 10, handle, Counter(), max_attempts=3)
    assert store.inbox_depth()[0] == 3
    assert store.dead_letters() == []


async def test_a_stopped_worker_is_restarted_counted_and_reported_down_meanwhile() -> None:
    stats: Counter[str] = Counter()
    supervisor = Supervisor(stats, backoff_max=60)
    runs = 0
    again = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("boom")
        again.set()
        await asyncio.Event().wait()  # runs for good the second time

    supervisor.start("w", work)
    for _ in range(20):  # bounded
        if supervisor.down():
            break
        await asyncio.sleep(0.01)
    assert supervisor.down() == {"w": "RuntimeError"}
    await asyncio.wait_for(again.wait(), 5)  # restarted after its 1 s backoff
    assert supervisor.down() == {}
    assert stats["worker restarts w"] == 1
    await supervisor.stop("w")


async def test_the_commit_hook_wakes_the_outbox_only_after_a_commit_that_queued_a_decision(
    store: SqliteStore,
) -> None:
    """Items 0 and 2 decide something (the queued count grows), item 1 does not: the event is
    set after each deciding item's commit, never before it and never for item 1."""
    queued = 0
    wake = asyncio.Event()
    seen: list[bool] = []  # whether the event was set when each item began

    async def handle(origin: str, raw: bytes) -> None:
        nonlocal queued
        seen.append(wake.is_set())
        wake.clear()
        if raw != b"body 1":
            queued += 1  # what Pipeline.queued does when it enqueues a delivery

    await drain_items(store, "fhir", 10, handle, Counter(), 3,
                      committed=wake_on_decisions(lambda: queued, wake))
    # Before item 0 nothing was set; item 0 decided, so it was set when item 1 began; item 1
    # decided nothing, so it was clear when item 2 began; item 2 decided: set at the end.
    assert seen == [False, True, False]
    assert wake.is_set()
