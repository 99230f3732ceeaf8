"""What a FHIR server or integration engine pushed: classified, checked, and given a dedupe key.

Pure: no I/O. Knows the shapes of classic R4 rest-hook (``PUT {endpoint}/{Type}/{id}`` with the
resource; an empty ``POST`` meaning "something changed"), topic-based notifications (R4 backport:
a history Bundle whose first entry is Parameters; R4B: history with SubscriptionStatus; R5:
``subscription-notification``), and plain resources or Bundles posted by an integration engine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_engagement.errors import NotificationError
from fhir_engagement.ingest.fhir import resource_path

__all__ = ["Notice", "classify"]

_TOPIC_TYPES = ("handshake", "heartbeat", "event-notification", "query-status", "query-event")


@dataclass(frozen=True, slots=True)
class Notice:
    """One push: its kind, the dedupe key, and what it points at without including it."""

    kind: str  # resource | bundle | poll | handshake | heartbeat | event-notification
    dedupe: str
    document: dict[str, Any] | None = None
    subscription: str | None = None
    event_numbers: tuple[int, ...] = ()
    events_since_start: int | None = None
    focus: tuple[str, ...] = ()  # references to fetch: id-only and empty notifications


def classify(body: bytes, path_type: str | None = None, path_id: str | None = None) -> Notice:
    """Check and classify one body; raises NotificationError saying what is wrong and where."""
    if not body.strip():
        if path_type:
            raise NotificationError(f"{path_type}/{path_id}", "a PUT must carry the resource")
        return Notice("poll", "poll")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotificationError(f"body line {exc.lineno} column {exc.colno}",
                                f"not valid JSON: {exc.msg}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise NotificationError("body", "not a FHIR resource (no resourceType)")
    if path_type:
        _check_path(doc, path_type, path_id)
    if doc["resourceType"] == "Bundle":
        return _bundle(doc, body)
    return Notice("resource", _resource_key(doc, body), doc)


def _check_path(doc: dict[str, Any], path_type: str, path_id: str | None) -> None:
    if doc["resourceType"] != path_type:
        raise NotificationError("resourceType", f"the body is a {doc['resourceType']}, the URL "
                                f"says {path_type}")
    if path_id is not None and doc.get("id") not in (None, path_id):
        raise NotificationError("id", f"the body's id {doc.get('id')!r} is not the URL's {path_id!r}")


def _bundle(doc: dict[str, Any], body: bytes) -> Notice:
    entries = doc.get("entry", [])
    if not isinstance(entries, list):
        raise NotificationError("Bundle.entry", "expected a list")
    first = entries[0].get("resource") if entries and isinstance(entries[0], dict) else None
    if isinstance(first, dict) and first.get("resourceType") in ("Parameters", "SubscriptionStatus"):
        return _topic(doc, first)
    return Notice("bundle", f"bundle:{_hash(body)}", doc)


def _topic(doc: dict[str, Any], status: dict[str, Any]) -> Notice:
    fields = _backport(status) if status["resourceType"] == "Parameters" else _status(status)
    kind, subscription, since, events = fields
    if kind not in _TOPIC_TYPES:
        raise NotificationError("entry[0] type", f"unknown notification type {kind!r}")
    if not subscription:
        raise NotificationError("entry[0] subscription", "a notification must name its subscription")
    numbers = tuple(n for n, _ in events if n is not None)
    included = {resource_path(e["fullUrl"]) for e in doc.get("entry", [])[1:]
                if isinstance(e, dict) and isinstance(e.get("fullUrl"), str) and "resource" in e}
    focus = tuple(f for _, f in events if f and resource_path(f) not in included)
    key = f"{subscription}#{max(numbers)}" if numbers else f"{subscription}#{kind}:{since}"
    return Notice(kind, key, doc, subscription, numbers, since, focus)


def _backport(params: dict[str, Any]) -> tuple[str, str, int | None, list[tuple[int | None, str]]]:
    """R4 backport: a Parameters resource (its values are strings even when they are numbers)."""
    kind, subscription, since, events = "", "", None, []
    for p in params.get("parameter", []):
        name = p.get("name")
        if name == "type":
            kind = p.get("valueCode", "")
        elif name == "subscription":
            subscription = p.get("valueReference", {}).get("reference") or p.get("valueString", "")
        elif name == "events-since-subscription-start":
            since = _int(p, "events-since-subscription-start")
        elif name == "notification-event":
            parts = {q.get("name"): q for q in p.get("part", [])}
            number = _int(parts["event-number"], "event-number") if "event-number" in parts else None
            focus = parts.get("focus", {}).get("valueReference", {}).get("reference", "")
            events.append((number, focus))
    return kind, subscription, since, events


def _status(status: dict[str, Any]) -> tuple[str, str, int | None, list[tuple[int | None, str]]]:
    """R4B and R5: a SubscriptionStatus (eventsSinceSubscriptionStart is a string in R4B)."""
    since = status.get("eventsSinceSubscriptionStart")
    events = [(_number(e.get("eventNumber")), (e.get("focus") or {}).get("reference", ""))
              for e in status.get("notificationEvent", []) if isinstance(e, dict)]
    subscription = (status.get("subscription") or {}).get("reference", "")
    return status.get("type", ""), subscription, _number(since), events


def _int(part: dict[str, Any], name: str) -> int:
    for key in ("valueString", "valueInteger64", "valueUnsignedInt", "valueInteger", "valueDecimal"):
        if key in part:
            number = _number(part[key])
            if number is not None:
                return number
    raise NotificationError(name, "expected a whole number")


def _number(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError) as exc:
        raise NotificationError("event number", f"not a whole number: {value!r}") from exc


def _resource_key(doc: dict[str, Any], body: bytes) -> str:
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    version = meta.get("versionId") or meta.get("lastUpdated")
    if doc.get("id") and version:
        return f"{doc['resourceType']}/{doc['id']}/{version}"
    return f"resource:{_hash(body)}"


def _hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]
