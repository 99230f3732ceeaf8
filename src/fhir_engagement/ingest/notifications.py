"""What a FHIR server or integration engine pushed: classified, checked, and given a dedupe key.

Pure: no I/O. Knows the shapes of classic R4 rest-hook (``PUT {endpoint}/{Type}/{id}`` with the
resource; an empty ``POST`` meaning "something changed"), topic-based notifications (R4 backport:
a history Bundle whose first entry is Parameters; R4B: history with SubscriptionStatus; R5:
``subscription-notification``), and plain resources or Bundles posted by an integration engine.

Every body is either a Notice or a NotificationError naming the JSON element: wrong types, bodies
nested deeper than MAX_DEPTH and absurd event numbers are refused, never a crash. Event numbers
are rejected, not clamped, outside 0..MAX_EVENT_NUMBER or above the notification's own
events-since-start: the inbox keeps the largest number seen to find lost events, so one absurd
number would hide every later gap.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_engagement.errors import NotificationError
from fhir_engagement.ingest.references import MAX_DEPTH, resource_path, too_deep

__all__ = ["MAX_EVENT_NUMBER", "Notice", "classify"]

# The largest integer every JSON implementation reads exactly (2^53 - 1); FHIR's integer64 goes
# to 2^63 - 1, but no server counts that many events, and SQLite's INTEGER stops there.
MAX_EVENT_NUMBER = 2**53 - 1

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


def classify(body: bytes, path_type: str | None = None, path_id: str | None = None, *,
             kept: bool = False) -> Notice:
    """Check and classify one body; raises NotificationError saying what is wrong and where.

    ``kept``: the body passed these checks when it was accepted (the inbox worker reading it
    back), so the full depth walk, a third of the cost, is not made again.
    """
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
    if not kept and too_deep(doc):
        raise NotificationError("body", f"nested more than {MAX_DEPTH} levels deep")
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
        raise NotificationError("id", f"the body's id {_short(doc.get('id'))} is not the URL's "
                                f"{_short(path_id)}")


def _bundle(doc: dict[str, Any], body: bytes) -> Notice:
    entries = doc.get("entry", [])
    if not isinstance(entries, list):
        raise NotificationError("Bundle.entry", "expected a list")
    first = entries[0].get("resource") if entries and isinstance(entries[0], dict) else None
    if isinstance(first, dict) and first.get("resourceType") in ("Parameters", "SubscriptionStatus"):
        return _topic(doc, first, body)
    return Notice("bundle", f"bundle:{_hash(body)}", doc)


def _topic(doc: dict[str, Any], status: dict[str, Any], body: bytes) -> Notice:
    fields = _backport(status) if status["resourceType"] == "Parameters" else _status(status)
    kind, subscription, since, events = fields
    if kind not in _TOPIC_TYPES:
        raise NotificationError("entry[0] type", f"unknown notification type {_short(kind)}")
    if not subscription:
        raise NotificationError("entry[0] subscription", "a notification must name its subscription")
    numbers = tuple(n for n, _ in events if n is not None)
    if numbers and since is not None and max(numbers) > since:
        raise NotificationError("entry[0] event number", f"event {max(numbers)} is beyond the "
                                f"{since} events the subscription has had")
    included = {resource_path(e["fullUrl"]) for e in doc["entry"][1:]
                if isinstance(e, dict) and isinstance(e.get("fullUrl"), str) and "resource" in e}
    focus = tuple(f for _, f in events if f and resource_path(f) not in included)
    # The event number alone is the sender's word: a forged notification or a server whose
    # numbering restarted would take an earlier event's key and be dropped as its duplicate.
    # What the event is (its focus) and the body's digest go in too; a true re-send still matches.
    named = ",".join(sorted(resource_path(f) for _, f in events if f))
    head = f"#{max(numbers)}" if numbers else f"#{kind}:{since}"
    key = f"{subscription}{head}|{named}|{_hash(body)}"
    return Notice(kind, key, doc, subscription, numbers, since, focus)


_Fields = tuple[str, str, int | None, list[tuple[int | None, str]]]


def _backport(params: dict[str, Any]) -> _Fields:
    """R4 backport: a Parameters resource (its values are strings even when they are numbers)."""
    kind, subscription, since, events = "", "", None, []
    for i, p in enumerate(_items(params, "parameter", "entry[0].parameter")):
        where = f"entry[0].parameter[{i}]"
        name = p.get("name")
        if name == "type":
            kind = _text(p.get("valueCode"))
        elif name == "subscription":
            subscription = _reference(p.get("valueReference")) or _text(p.get("valueString"))
        elif name == "events-since-subscription-start":
            since = _int(p, where)
        elif name == "notification-event":
            parts = {_text(q.get("name")): q for q in _items(p, "part", f"{where}.part")}
            number = _int(parts["event-number"], where) if "event-number" in parts else None
            focus = _reference(parts.get("focus", {}).get("valueReference"))
            events.append((number, focus))
    return kind, subscription, since, events


def _status(status: dict[str, Any]) -> _Fields:
    """R4B and R5: a SubscriptionStatus (eventsSinceSubscriptionStart is a string in R4B)."""
    events = []
    for i, e in enumerate(_items(status, "notificationEvent", "entry[0].notificationEvent")):
        number = _number(e.get("eventNumber"), f"entry[0].notificationEvent[{i}].eventNumber")
        events.append((number, _reference(e.get("focus"))))
    subscription = _reference(status.get("subscription"))
    since = _number(status.get("eventsSinceSubscriptionStart"), "entry[0].eventsSinceSubscriptionStart")
    return _text(status.get("type")), subscription, since, events


def _items(obj: dict[str, Any], name: str, where: str) -> list[dict[str, Any]]:
    """A list of objects; anything else is refused, so no wrong type reaches the code below."""
    value = obj.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise NotificationError(where, "expected a list of objects")
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _reference(value: Any) -> str:
    return _text(value.get("reference")) if isinstance(value, dict) else ""


def _int(part: dict[str, Any], where: str) -> int:
    for key in ("valueString", "valueInteger64", "valueUnsignedInt", "valueInteger", "valueDecimal"):
        if key in part:
            number = _number(part[key], f"{where}.{key}")
            if number is not None:
                return number
    raise NotificationError(where, "expected a whole number")


def _number(value: Any, where: str) -> int | None:
    """A whole number 0..MAX_EVENT_NUMBER from an int, an integral decimal or a digit string."""
    if value is None:
        return None
    if isinstance(value, str) and 0 < len(value.strip()) <= 20 and value.strip().isascii() \
            and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise NotificationError(where, f"not a whole number: {_short(value)}")
    if not 0 <= number <= MAX_EVENT_NUMBER:
        raise NotificationError(where, f"{number} is out of range 0..{MAX_EVENT_NUMBER}: refused, "
                                "not clamped")
    return number


def _short(value: Any) -> str:
    """A bounded echo of a bad value for an error message (never the whole body)."""
    text = repr(value) if isinstance(value, str | int | float | bool | None) else type(value).__name__
    return text[:40]


def _resource_key(doc: dict[str, Any], body: bytes) -> str:
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    version = meta.get("versionId") or meta.get("lastUpdated")
    if doc.get("id") and version:  # the digest too: the same id and version from another sender
        return f"{doc['resourceType']}/{doc['id']}/{version}|{_hash(body)}"
    return f"resource:{_hash(body)}"


def _hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]
