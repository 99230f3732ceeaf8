"""``/metrics`` on a real socket: well-formed Prometheus text whatever a sender names things."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from fhir_engagement.config import Settings
from fhir_engagement.live.app import PIPELINE, build_app
from fhir_engagement.live.metrics import LABEL_MAX
from fhir_engagement.pipeline import Engine
from fhir_engagement.store import SqliteStore
from tests.conftest import MAPPINGS, REALDATA, serve_app

SECRET = "s3cret-for-metrics"
AUTH = {"Authorization": f"Bearer {SECRET}"}
HEARTBEAT = REALDATA / "subscriptions" / "inferno-subscriptions-test-kit" / "heartbeat_bundle_example.json"
# A sender-chosen subscription name that tries to add lines: an NHS number and a fake depth.
HOSTILE = ('https://evil.example/Subscription/1"} 1\nfhir_engagement_inbox_depth 0\n'
           'nhs_leak{nhs="9990001073"} 1\n#')


@pytest.fixture
async def serve(engine: Engine, tmp_path: Path) -> AsyncIterator[tuple[str, web.Application]]:
    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "s.sqlite3"), notify_token=SECRET)
    store = SqliteStore(settings.store)
    app = build_app(settings, engine, store)
    async with serve_app(app) as served:
        yield served.url, app
    store.close()


def _heartbeat(subscription: str) -> bytes:
    bundle = json.loads(HEARTBEAT.read_text())
    bundle["entry"][0]["resource"]["parameter"][0]["valueReference"]["reference"] = subscription
    return json.dumps(bundle).encode()


async def _scrape(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/metrics", headers=AUTH) as resp:  # the read credential
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await resp.text()


async def test_a_hostile_subscription_name_injects_no_sample_and_no_nhs_number(
    serve: tuple[str, web.Application], http: aiohttp.ClientSession
) -> None:
    url, _ = serve
    for name in ("https://fhirserver.org/fhir/Subscription/123", HOSTILE, "x" * 5000):
        async with http.post(f"{url}/notify", data=_heartbeat(name), headers=AUTH) as resp:
            assert resp.status == 200
    text = await _scrape(http, url)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "nhs_leak" not in families
    assert "9990001073" not in text
    depth = list(families["fhir_engagement_inbox_depth"].samples)
    assert len(depth) == 1  # the real one only, never the injected "0"
    subs = [s.labels["subscription"] for s in families["fhir_engagement_subscription_last_seen"].samples]
    assert len(subs) == 3
    assert "https://fhirserver.org/fhir/Subscription/123" in subs
    hostile = next(s for s in subs if s.startswith("https://evil"))
    assert "\n" in hostile  # kept as one escaped label value, not a new line of output
    assert all(len(s) <= LABEL_MAX for s in subs)


async def test_every_family_has_help_and_type_and_counters_end_in_total(
    serve: tuple[str, web.Application], http: aiohttp.ClientSession
) -> None:
    url, app = serve
    app[PIPELINE].stats["worker restarts fhir-inbox"] += 2
    text = await _scrape(http, url)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"fhir_engagement_events", "fhir_engagement_deliveries", "fhir_engagement_inbox_depth",
            "fhir_engagement_inbox_oldest_age_seconds"} <= set(families)
    for family in families.values():
        assert f"# HELP {family.name}" in text
        assert f"# TYPE {family.name}" in text
    events = families["fhir_engagement_events"]
    assert events.type == "counter"
    restarts = [s for s in events.samples if s.labels == {"kind": "worker restarts fhir-inbox"}]
    assert [(s.name, s.value) for s in restarts] == [("fhir_engagement_events_total", 2.0)]


async def test_two_apps_in_one_process_keep_their_own_counts(
    serve: tuple[str, web.Application], http: aiohttp.ClientSession, engine: Engine, tmp_path: Path
) -> None:
    url, app = serve
    app[PIPELINE].stats["deletions seen"] += 1
    other_store = SqliteStore(str(tmp_path / "other.sqlite3"))
    other = build_app(Settings(mappings_dir=MAPPINGS, store=other_store.location), engine, other_store)
    other[PIPELINE].stats["deletions seen"] += 5  # a second app: no global registry collides
    text = await _scrape(http, url)
    other_store.close()
    assert 'fhir_engagement_events_total{kind="deletions seen"} 1.0' in text


@pytest.mark.parametrize(("silent_periods", "overdue"), [(2.9, 0), (3.1, 1)])
async def test_a_subscription_is_overdue_after_three_heartbeat_periods(
    engine: Engine, tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
    silent_periods: float, overdue: int,
) -> None:
    """The alarm is keyed to the heartbeat the subscriptions ask for (heartbeat_period)."""
    from datetime import UTC, datetime, timedelta

    from fhir_engagement.live import metrics as metrics_module

    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "s.sqlite3"),
                        notify_token=SECRET, heartbeat_period=60)
    store = SqliteStore(settings.store)
    store.subscription_seen("https://fhir.example/Subscription/hb", "heartbeat", None)
    store.commit()
    later = datetime.now(UTC) + timedelta(seconds=60 * silent_periods)

    class Later(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return later

    monkeypatch.setattr(metrics_module, "datetime", Later)
    try:
        async with serve_app(build_app(settings, engine, store)) as served:
            text = await _scrape(http, served.url)
    finally:
        store.close()
    assert ('fhir_engagement_subscription_heartbeat_overdue{subscription='
            f'"https://fhir.example/Subscription/hb"}} {overdue}') in text
