"""``/metrics``: Prometheus exposition of the pipeline's counters, queue depths and subscriptions.

Built with ``prometheus_client`` so the text is always well formed: label values are escaped (a
subscription name with a newline or a quote cannot add a line), every family has HELP and TYPE,
and counters end in ``_total``. Each app has its own ``CollectorRegistry`` (never the library's
global one: tests run several apps in one process), holding one collector that reads the live
values at scrape time. Each replica reports itself (``replica`` label, the lease, whether the
store answers, its lag): while the store does not answer, those are still served and the families
read from the store are left out, so the scrape says why rather than failing. No label names a
person: subscription labels are the senders' URLs or ids, cut to a bounded length, with anything
shaped like an NHS number masked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterator
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fhir_engagement.errors import StoreError
from fhir_engagement.fhirserver.subscribe import OVERDUE_PERIODS
from fhir_engagement.live.keys import CLIENT, LEASE, PIPELINE, REPLICA, SETTINGS, STORE
from fhir_engagement.observability import mask_identifiers

__all__ = ["LABEL_MAX", "LiveCollector", "metrics_handler", "metrics_registry"]

# generate_latest writes the classic text format; every Prometheus (2.x too) reads this version.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABEL_MAX = 120  # a sender-chosen label is cut here: one scrape stays small whatever is posted

Handler = Callable[[web.Request], Awaitable[web.Response]]


def metrics_registry(app: web.Application) -> CollectorRegistry:
    """A registry of this app's metrics alone (``auto_describe`` off: describing reads the store)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCollector(app))
    return registry


def metrics_handler(app: web.Application) -> Handler:
    """The aiohttp handler for GET /metrics, serving the app's own registry."""
    registry = metrics_registry(app)

    async def metrics(_: web.Request) -> web.Response:
        # Read on the event loop on purpose: the store's connection belongs to it, and a scrape
        # is a handful of indexed counts.
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return metrics


def safe_label(value: str) -> str:
    """A sender-chosen label value, bounded and with NHS-number-shaped runs masked.

    Escaping is prometheus_client's job; this only keeps people out and the size bounded."""
    masked = mask_identifiers(value)
    return masked if len(masked) <= LABEL_MAX else masked[: LABEL_MAX - 1] + "…"


class LiveCollector(Collector):
    """The app's live values, read at each scrape (nothing is copied between scrapes)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._pipeline()
        reachable = yield from self._replica()
        if reachable:
            yield from self._from_store()
        yield from self._client()

    def _from_store(self) -> list[Metric]:
        """The families read from the store, all built before any is served: none half-made."""
        try:
            return [*self._queues(), *self._subscriptions()]
        except StoreError:  # it stopped answering between two queries: the next scrape says so
            return []

    def _replica(self) -> Generator[Metric, None, bool]:
        """This replica: its name, the lease, the store's health; returns whether it answers."""
        health = self.app[STORE].health()
        info = GaugeMetricFamily("fhir_engagement_replica",
                                 "This replica (1), by name and store backend.",
                                 labels=["replica", "backend"])
        info.add_metric([safe_label(self.app[REPLICA]), health.backend], 1)
        yield info
        yield GaugeMetricFamily(
            "fhir_engagement_lease_held",
            "1 while this replica holds the lease: it decides and delivers (0: a standby).",
            value=int(self.app[LEASE].held))
        yield GaugeMetricFamily("fhir_engagement_store_reachable",
                                "1 while the store answers.", value=int(health.reachable))
        if health.lag_seconds is not None:
            yield GaugeMetricFamily("fhir_engagement_store_lag_seconds",
                                    "How far the configured read replica is behind.",
                                    value=health.lag_seconds)
        return health.reachable

    def _pipeline(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "fhir_engagement_events", "What the pipeline and its workers counted, by kind.",
            labels=["kind"])
        for kind, count in sorted(self.app[PIPELINE].stats.items()):
            events.add_metric([safe_label(kind)], count)
        yield events

    def _queues(self) -> Iterator[Metric]:
        store = self.app[STORE]
        deliveries = GaugeMetricFamily(
            "fhir_engagement_deliveries", "Write-back batches in the store, by state.",
            labels=["state"])
        for state, count in sorted(store.delivery_counts().items()):
            deliveries.add_metric([state], count)
        yield deliveries
        depth, oldest = store.inbox_depth()
        yield GaugeMetricFamily("fhir_engagement_inbox_depth",
                                "Items kept in the inbox and not yet processed.", value=depth)
        age = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
        yield GaugeMetricFamily("fhir_engagement_inbox_oldest_age_seconds",
                                "How long the oldest unprocessed inbox item has waited.", value=age)

    def _subscriptions(self) -> Iterator[Metric]:
        last_event = GaugeMetricFamily(
            "fhir_engagement_subscription_last_event",
            "The last event number each subscription sent.", labels=["subscription"])
        last_seen = GaugeMetricFamily(
            "fhir_engagement_subscription_last_seen",
            "When each subscription was last heard from (Unix time), and what it sent.",
            labels=["subscription", "type"])
        overdue = GaugeMetricFamily(
            "fhir_engagement_subscription_heartbeat_overdue",
            "1 when a subscription has been silent longer than its heartbeat allows.",
            labels=["subscription"])
        overdue_after = OVERDUE_PERIODS * self.app[SETTINGS].heartbeat_period
        now = datetime.now(UTC)
        for sub, last, seen, kind in self.app[STORE].subscriptions():
            label = safe_label(sub)
            moment = datetime.fromisoformat(seen.replace("Z", "+00:00"))
            last_event.add_metric([label], last)
            last_seen.add_metric([label, safe_label(kind)], round(moment.timestamp()))
            # The watchdog: a subscription silent for longer than its heartbeat allows is an alarm.
            overdue.add_metric([label], int((now - moment).total_seconds() > overdue_after))
        yield from (last_event, last_seen, overdue)

    def _client(self) -> Iterator[Metric]:
        client = self.app.get(CLIENT)
        if client is not None:  # no FHIR server configured: no client, no family
            yield CounterMetricFamily(
                "fhir_engagement_search_pages_capped",
                "Searches cut short at the page cap (the rest of their results was not read).",
                value=client.pages_capped)
