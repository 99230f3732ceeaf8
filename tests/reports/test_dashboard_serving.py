"""/dashboard in serve: built off the event loop, on its own read-only connection, and cached."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.live.app import build_app
from fhir_engagement.pipeline import Engine
from fhir_engagement.reports import dashboard
from fhir_engagement.store import SqliteStore
from tests.conftest import MAPPINGS

Builds = list[str]  # the thread each page was built on


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Builds:
    """Every page build, recorded by thread; each takes 0.3 s more, as on a big store."""
    seen: Builds = []
    real: Callable[..., str] = dashboard.dashboard_html

    def slow(*args: object, **kwargs: object) -> str:
        seen.append(threading.current_thread().name)
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(dashboard, "dashboard_html", slow)
    return seen


async def _serve(path: Path, engine: Engine, cache_seconds: float) -> AsyncIterator[str]:
    store = SqliteStore(str(path))
    settings = Settings(mappings_dir=MAPPINGS, store=str(path), dashboard_cache_seconds=cache_seconds)
    runner = web.AppRunner(build_app(settings, engine, store))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
        store.close()


@pytest.fixture
async def base(store_copy: Path, engine: Engine) -> AsyncIterator[str]:
    async for url in _serve(store_copy, engine, 30.0):
        yield url


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[float, str]:
    started = time.perf_counter()
    async with http.get(url) as resp:
        assert resp.status == 200
        return time.perf_counter() - started, await resp.text()


async def test_eight_dashboards_at_once_build_once_off_the_loop_and_health_answers_meanwhile(
    base: str, builds: Builds
) -> None:
    async with aiohttp.ClientSession() as http:
        pages = [asyncio.create_task(_get(http, f"{base}/dashboard")) for _ in range(8)]
        await asyncio.sleep(0.05)  # the build is under way
        health_s, _ = await _get(http, f"{base}/healthz")
        done = await asyncio.gather(*pages)
    assert health_s < 0.15  # the loop was free while a 0.3 s page was built
    assert len({text for _, text in done}) == 1
    assert len(builds) == 1
    assert builds[0].startswith("dashboard")
    assert builds[0] != threading.current_thread().name


async def test_a_page_is_kept_for_the_cache_time_and_per_period(base: str, builds: Builds) -> None:
    async with aiohttp.ClientSession() as http:
        _, first = await _get(http, f"{base}/dashboard")
        cached_s, again = await _get(http, f"{base}/dashboard")
        _, q2 = await _get(http, f"{base}/dashboard?from=2025-04-01&to=2025-06-30")
    assert again == first
    assert cached_s < 0.2
    assert q2 != first
    assert len(builds) == 2  # one per period


async def test_no_cache_when_the_setting_is_zero(store_copy: Path, engine: Engine, builds: Builds) -> None:
    async for url in _serve(store_copy, engine, 0.0):
        async with aiohttp.ClientSession() as http:
            await _get(http, f"{url}/dashboard")
            await _get(http, f"{url}/dashboard")
    assert len(builds) == 2
