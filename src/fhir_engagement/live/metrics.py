"""``/metrics``: Prometheus text of the pipeline's counters, queue depths and subscriptions."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from fhir_engagement.live.keys import PIPELINE, SETTINGS, STORE

__all__ = ["metrics"]


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text: counters, queue depths and each subscription's last event."""
    store, stats = request.app[STORE], request.app[PIPELINE].stats
    depth, oldest = store.inbox_depth()
    lines = [f'fhir_engagement_events_total{{kind="{k}"}} {v}' for k, v in sorted(stats.items())]
    lines += [f'fhir_engagement_deliveries{{state="{k}"}} {v}'
              for k, v in sorted(store.delivery_counts().items())]
    lines.append(f"fhir_engagement_inbox_depth {depth}")
    age = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
    lines.append(f"fhir_engagement_inbox_oldest_age_seconds {age:.3f}")
    overdue_after = request.app[SETTINGS].heartbeat_timeout
    for sub, last, seen, kind in store.subscriptions():
        label = sub.replace('"', "")
        lines.append(f'fhir_engagement_subscription_last_event{{subscription="{label}"}} {last}')
        moment = datetime.fromisoformat(seen.replace("Z", "+00:00"))
        lines.append(f'fhir_engagement_subscription_last_seen{{subscription="{label}",'
                     f'type="{kind}"}} {moment.timestamp():.0f}')
        # The watchdog: a subscription silent for longer than its heartbeat allows is an alarm.
        silent = (datetime.now(UTC) - moment).total_seconds() > overdue_after
        lines.append(f'fhir_engagement_subscription_heartbeat_overdue{{subscription="{label}"}} '
                     f"{int(silent)}")
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
