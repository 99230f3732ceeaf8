"""/dashboard served for real on 127.0.0.1 and opened in a real headless browser (Debian's chromium).

The browser test never skips: without chromium it fails and says how to install it (.ci/run does).
The screenshots are kept under tests/artifacts/ (git-ignored) for a person to look at:
dashboard.png as the test's window shows it, dashboard-full.png tall enough for both charts.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.live.app import build_app
from fhir_engagement.pipeline import Engine
from fhir_engagement.reports.dashboard import CONTENT_SECURITY_POLICY
from fhir_engagement.store import SqliteStore
from tests.conftest import MAPPINGS, ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--enable-logging=stderr", "--v=0")
_WINDOW = "--window-size=1280,900"


@asynccontextmanager
async def _serving(app: web.Application) -> AsyncIterator[str]:
    """The app on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _dashboard_app(path: Path, engine: Engine) -> AsyncIterator[str]:
    store = SqliteStore(str(path))
    try:
        async with _serving(build_app(Settings(mappings_dir=MAPPINGS, store=str(path)), engine,
                                      store)) as base:
            yield base
    finally:
        store.close()


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed, and the dashboard must be tested in a real "
                    "browser: run `apt-get install -y chromium` (Debian; .ci/run does it)")
    return found


async def _browse(profile: Path, *args: str, window: str = _WINDOW) -> tuple[str, str]:
    """Run headless chromium on one URL; returns (stdout, stderr). Blocks only this coroutine,
    so the app keeps serving on the same loop."""
    proc = await asyncio.create_subprocess_exec(
        _chromium(), *_FLAGS, window, f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(), err.decode(errors="replace")


def _console_errors(stderr: str) -> list[str]:
    """What the page logged to the console (chromium writes it as INFO:CONSOLE lines): a page
    with no script should log nothing, so any line is a failure (CSP violations, failed loads)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_the_dashboard_loads_in_chromium_with_both_charts_and_no_console_errors(
    store_copy: Path, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot, full = ARTIFACTS / "dashboard.png", ARTIFACTS / "dashboard-full.png"
    shot.unlink(missing_ok=True)
    full.unlink(missing_ok=True)
    async with _dashboard_app(store_copy, engine) as base:
        url = f"{base}/dashboard"
        dom, dom_log = await _browse(tmp_path / "profile-dom", "--dump-dom", url)
        _, shot_log = await _browse(tmp_path / "profile-shot", f"--screenshot={shot}", url)
        await _browse(tmp_path / "profile-full", f"--screenshot={full}", url,
                      window="--window-size=1280,2000")
    with capsys.disabled():
        print(f"\ndashboard screenshots: {shot} and {full}")  # noqa: T201 (where the artifact is)
    assert "<h1>Children's engagement with health care</h1>" in dom
    assert dom.count("<svg") == 2
    assert 'id="rate-chart"' in dom
    assert 'id="mix-chart"' in dom
    assert dom.count("<circle") == 6  # a point per provider and quarter (test_rates.BY_HAND)
    assert dom.count("<polyline") == 2
    assert "Organization/trust-a, 2025-Q1: 2 of 10 not brought (20.0%)" in dom
    assert _console_errors(dom_log + shot_log) == []
    assert _png_size(shot) == (1280, 900)
    assert shot.stat().st_size > 20_000  # charts drawn: a blank page of this size is ~5 KB


async def test_the_console_check_does_catch_a_page_error(tmp_path: Path) -> None:
    """The check above can fail: a page that throws is caught by it."""
    async def broken(_: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=(
            '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
            "<script>throw new Error('deliberate');</script></body></html>"))

    app = web.Application()
    app.router.add_get("/broken", broken)
    async with _serving(app) as base:
        _, log = await _browse(tmp_path / "profile", "--dump-dom", f"{base}/broken")
    assert any("Uncaught Error: deliberate" in line for line in _console_errors(log))


async def test_the_page_forbids_loading_anything(store_copy: Path, engine: Engine) -> None:
    async with _dashboard_app(store_copy, engine) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/dashboard") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            page = await resp.text()
        async with http.get(f"{base}/dashboard?from=2025-04-01&to=2025-06-30") as resp:
            q2 = await resp.text()
        async with http.get(f"{base}/dashboard?from=April") as resp:
            assert resp.status == 400
            assert "not a date" in await resp.text()
    for forbidden in ("<script", "<img", "<link rel=\"stylesheet", "@import", "url("):
        assert forbidden not in page
    assert "2024-Q4" in page
    assert "2024-Q4" not in q2
