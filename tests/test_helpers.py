"""The shared test helpers in tests/conftest.py do what the tests that lean on them assume."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from fhir_engagement.errors import StoreError
from fhir_engagement.store import SqliteStore, Store
from tests import conftest
from tests.conftest import STORE_WRITES, RefusingStore, serve_app


def test_every_write_the_refusing_store_knows_is_a_store_method() -> None:
    assert STORE_WRITES - set(dir(Store)) == set()


def test_a_refusing_store_refuses_writes_and_still_answers_reads(tmp_path: Path) -> None:
    sqlite = SqliteStore(str(tmp_path / "s.sqlite3"))
    store = RefusingStore(sqlite)
    store.dead_letter("test", "kept", b"x")
    store.refusing = True
    with pytest.raises(StoreError, match="refuses writes"):
        store.inbox_put("mllp", "A|B", "1", "test", b"raw")
    with pytest.raises(StoreError):
        store.commit()
    assert [reason for _, reason, _ in store.dead_letters()] == ["kept"]
    store.refusing = False
    assert store.inbox_put("mllp", "A|B", "1", "test", b"raw")
    sqlite.close()


async def _pong(_: web.Request) -> web.Response:
    return web.Response(text="pong")


async def test_serve_app_answers_on_the_port_it_reports() -> None:
    app = web.Application()
    app.router.add_get("/ping", _pong)
    async with serve_app(app) as served, aiohttp.ClientSession() as http:
        assert served.port > 0
        assert served.url == f"http://127.0.0.1:{served.port}"
        async with http.get(f"{served.url}/ping") as resp:
            assert await resp.text() == "pong"


def test_missing_realdata_names_the_folder_and_what_it_should_hold(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(conftest, "REALDATA", tmp_path / "realdata")
    conftest.realdata_problem.cache_clear()
    try:
        with pytest.raises(pytest.fail.Exception) as failed:
            conftest.require_realdata()
    finally:
        conftest.realdata_problem.cache_clear()
    message = str(failed.value)
    assert str(tmp_path / "realdata") in message
    assert "../shared/realdata" in message
    for folder in conftest.REALDATA_CONTENTS:
        assert f"{folder}/" in message
