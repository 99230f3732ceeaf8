"""``serve``'s HTTP side, safe by default: credentials, slow and many clients, no exposure."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from fhir_engagement.config import Settings
from fhir_engagement.live.app import build_app
from fhir_engagement.live.http import serve
from fhir_engagement.pipeline import Engine
from fhir_engagement.store import SqliteStore
from tests.conftest import MAPPINGS, ROOT
from tests.integration.conftest import free_port

NOTIFY = {"Authorization": "Bearer notify-secret"}
READ = {"Authorization": "Bearer read-secret"}


@pytest.fixture
async def running(engine: Engine, tmp_path: Path) -> AsyncIterator[Settings]:
    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "s.sqlite3"),
                        port=free_port(), notify_token="notify-secret", read_token="read-secret",
                        header_timeout=0.5, body_timeout=0.5, max_connections=8)
    store = SqliteStore(settings.store)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(build_app(settings, engine, store), settings, stop))
    for _ in range(100):  # bounded: until it listens
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", settings.port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        break
    yield settings
    stop.set()
    await asyncio.wait_for(task, 30)
    store.close()


def _url(settings: Settings, path: str) -> str:
    return f"http://127.0.0.1:{settings.port}{path}"


async def test_read_endpoints_need_the_read_credential_and_readyz_hides_details(
    running: Settings, http: aiohttp.ClientSession
) -> None:
    for path in ("/metrics", "/dashboard"):
        async with http.get(_url(running, path)) as resp:
            assert resp.status == 401, path
        async with http.get(_url(running, path), headers=NOTIFY) as resp:
            assert resp.status == 401, path  # the notify credential does not open reading
        async with http.get(_url(running, path), headers=READ) as resp:
            assert resp.status == 200, path
    async with http.get(_url(running, "/readyz")) as resp:
        assert (resp.status, await resp.json()) == (200, {"ready": True})
    async with http.get(_url(running, "/readyz"), headers=READ) as resp:
        body = await resp.json()
    assert body.pop("replica")  # host:pid: one SQLite process is the only replica
    assert body == {"ready": True, "problems": [], "lease": "held", "store": "sqlite",
                    "lag_seconds": None}
    async with http.get(_url(running, "/healthz")) as resp:
        assert resp.status == 200


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        return False
    return data == b"" or b"408" in data


async def test_a_client_slow_to_send_headers_is_closed(running: Settings) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"POST /notify HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
    await writer.drain()
    assert await _closed_within(reader, 5)
    writer.close()


async def test_a_body_slow_to_arrive_gets_408(running: Settings) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"POST /notify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer notify-secret\r\n"
                 b"Content-Length: 100\r\n\r\n{")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(200), 5)
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_connections_over_the_cap_are_closed_and_the_listener_still_answers(
    running: Settings, http: aiohttp.ClientSession
) -> None:
    held = [await asyncio.open_connection("127.0.0.1", running.port) for _ in range(8)]
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    assert await _closed_within(reader, 2)  # the ninth: closed at once
    writer.close()
    for _, w in held:
        w.close()
    await asyncio.sleep(0.1)
    async with http.get(_url(running, "/healthz")) as resp:
        assert resp.status == 200


def test_serve_beyond_loopback_without_credentials_is_refused_unless_insecure(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_ENGAGEMENT_")}
    base = [sys.executable, "-m", "fhir_engagement", "serve", "--host", "0.0.0.0",
            "--port", str(free_port()), "--store", str(tmp_path / "s.sqlite3")]
    refused = subprocess.run(base, capture_output=True, text=True, timeout=60, env=env,
                             cwd=ROOT, check=False)
    assert refused.returncode == 2
    assert "beyond this machine" in refused.stderr
    started = subprocess.Popen([*base, "--insecure"], stderr=subprocess.PIPE, text=True, env=env,
                               cwd=ROOT)
    try:
        time.sleep(3)
        assert started.poll() is None  # it runs
    finally:
        started.send_signal(signal.SIGTERM)
        _, err = started.communicate(timeout=60)
    assert started.returncode == 0
    assert "--insecure" in err
    assert "Traceback" not in err
