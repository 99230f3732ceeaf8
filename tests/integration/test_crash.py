"""kill -9 in the middle of a stream: every decision reaches the FHIR server exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.conftest import free_port
from tests.integration.conftest import FhirServer

STREAM = 1000
NO_SHOWS = 100  # every tenth event, each a different child: one review-impact Task each


def _serve(port: int, store: Path, base: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fhir_engagement", "serve", "--port", str(port), "--store",
         str(store), "--fhir-base", base], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("FHIR_ENGAGEMENT_")})


def _appointment(i: int) -> dict[str, object]:
    return {"resourceType": "Appointment", "id": f"crash-{i}", "meta": {"versionId": "1"},
            "status": "noshow" if i % 10 == 0 else "fulfilled", "start": "2026-03-02T10:00:00Z",
            "participant": [{"actor": {"reference": f"Patient/crash-child-{i}"},
                             "status": "accepted"}]}


async def _send(http: aiohttp.ClientSession, url: str, numbers: range) -> int:
    """Send each event until it is kept (a sender retries what was not acknowledged)."""
    kept = 0
    for i in numbers:
        for _ in range(100):  # bounded: about 20 s per event while the listener restarts
            try:
                async with http.put(f"{url}/notify/Appointment/crash-{i}",
                                    json=_appointment(i)) as resp:
                    if resp.status == 200:
                        kept += 1
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    return kept


async def _ready(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(100):  # bounded: about 10 s
        try:
            async with http.get(f"{url}/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("serve did not start")


async def _tasks_on_server(http: aiohttp.ClientSession, base: str) -> list[str]:
    async with http.get(f"{base}/Task", params={"code": "review-impact", "_count": "500",
                                                "_elements": "focus"}) as resp:
        body = await resp.json(content_type=None)
    return [e["resource"]["focus"]["reference"] for e in body.get("entry", [])
            if e["resource"]["focus"]["reference"].startswith("Appointment/crash-")]


async def test_kill_9_mid_stream_then_restart_every_decision_once(
    fhir_server: FhirServer, tmp_path: Path
) -> None:
    port, store = free_port(), tmp_path / "serve.sqlite3"
    url = f"http://127.0.0.1:{port}"
    server = _serve(port, store, fhir_server.base_url)
    try:
        async with aiohttp.ClientSession() as http:
            await _ready(http, url)
            assert await _send(http, url, range(STREAM // 2)) == STREAM // 2
            server.send_signal(signal.SIGKILL)  # no drain, no goodbye
            server.wait(timeout=10)
            server = _serve(port, store, fhir_server.base_url)
            await _ready(http, url)
            # The sender does not know what the dead listener processed: it sends everything.
            assert await _send(http, url, range(STREAM)) == STREAM
            for _ in range(120):  # bounded: 60 s for the outbox to write everything
                focus = await _tasks_on_server(http, fhir_server.base_url)
                if len(focus) >= NO_SHOWS:
                    break
                await asyncio.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert len(focus) == NO_SHOWS
    assert len(set(focus)) == NO_SHOWS  # exactly once each
