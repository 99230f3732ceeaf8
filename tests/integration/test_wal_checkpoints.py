"""``serve`` on a SQLite file checkpoints its WAL in a worker, not in the commits on the loop.

A real socket, a real SQLite file. Pushes are kept (each 200 after its commit, as ever); what
the database file itself holds is read from a copy of that file alone: the worker's checkpoint
puts the kept pushes there within a few of its periods, where the writer's own commits would
not have (far below the writer's backstop of store/wal.py).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.live.app import build_app
from fhir_engagement.live.keys import SUPERVISOR
from fhir_engagement.pipeline import Engine
from fhir_engagement.store import SqliteStore, wal
from tests.conftest import MAPPINGS, serve_app

SECRET = "s3cret-for-wal-tests"
AUTH = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/fhir+json"}
PUSHES = 40


@pytest.fixture
async def served(engine: Engine, tmp_path: Path) -> AsyncIterator[tuple[str, web.Application, str]]:
    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "wal.sqlite3"),
                        notify_token=SECRET)
    store = SqliteStore(settings.store)
    app = build_app(settings, engine, store)
    async with serve_app(app) as server:
        yield server.url, app, settings.store
    store.close()


def _kept_in_file_alone(location: str, folder: Path) -> int:
    """Inbox rows in the database file itself (a copy of it without its -wal)."""
    alone = folder / "copy.sqlite3"
    shutil.copyfile(location, alone)
    with sqlite3.connect(alone) as db:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'inbox'").fetchone() is None:
            return 0
        return int(db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0])


async def test_kept_pushes_reach_the_database_file_by_the_checkpoint_worker(
    served: tuple[str, web.Application, str], tmp_path: Path
) -> None:
    url, app, location = served
    async with aiohttp.ClientSession() as http:
        for i in range(PUSHES):
            body = orjson.dumps({"resourceType": "Appointment", "id": f"w{i}", "status": "booked",
                                 "start": "2026-03-02T10:00:00Z"})
            async with http.put(f"{url}/notify/Appointment/w{i}", data=body, headers=AUTH) as resp:
                assert resp.status == 200
        found = 0
        for _ in range(int(20 * wal.PERIOD / 0.05)):  # bounded: twenty checkpoint periods
            found = _kept_in_file_alone(location, tmp_path)
            if found == PUSHES:
                break
            await asyncio.sleep(0.05)
        assert found == PUSHES
        async with http.get(f"{url}/readyz") as resp:
            assert resp.status == 200
    assert "wal-checkpoint" not in app[SUPERVISOR].down()
