"""Kept items for a person: retry a dead letter through its path; retry or drop an inbox item.

Nothing the adapter could not use is lost: it sits in the store with where it came from and why.
Retrying sends it back through the path it came by (a v2 message through the v2 inbox, a FHIR
push through the FHIR inbox, a refused delivery back to the outbox, a replayed record through the
reader), and forgets it only when that path takes it. Every path reads through ingest/records.py.

What an operator lists is never the content: ``preview`` says what kind of input it is (FHIR
resource type and entry count, or HL7 v2 message type) and its size, and ``mask`` blanks
quoted values, NHS-number-like digit runs and dates in origins and reasons (a reader's reason
may quote the value it refused). The content itself is shown only on an audited ``--reveal``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from fhir_engagement.errors import InputError, NotificationError
from fhir_engagement.ingest.notifications import classify
from fhir_engagement.ingest.records import Kind, RawItem
from fhir_engagement.live.fhir_inbox import FhirInbox
from fhir_engagement.live.v2_inbox import V2Inbox
from fhir_engagement.pipeline import Pipeline
from fhir_engagement.store.base import Store

__all__ = ["RetryResult", "drop_inbox_item", "mask", "preview", "retry_dead_letter",
           "retry_inbox_item"]

# Quoted literals (a reader quotes the value it refused), then dates and times (ISO, v2 DTM,
# day/month/year), then digit runs of 6 or more, spaced or not (NHS numbers, phone numbers).
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_DATE = re.compile(r"\b\d{4}-\d{2}(?:-\d{2})?(?:T[\d:.+\-Z]*)?|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b")
_DIGITS = re.compile(r"\d(?:[ -]?\d){5,}")
_CODE = re.compile(r"^[A-Za-z0-9_]{1,16}(?:\^[A-Za-z0-9_]{1,16}){0,2}$")
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


def mask(text: str) -> str:
    """``text`` with every value that could name or date a person replaced by a placeholder."""
    text = _QUOTED.sub(lambda m: f"<{len(m.group()) - 2} chars>", text)
    text = _DATE.sub("<date>", text)
    return _DIGITS.sub("<number>", text)


def preview(raw: bytes) -> str:
    """What kind of input this is and how big, from structure alone (never a value)."""
    size = f"{len(raw):,} bytes"
    body = raw.lstrip()
    if body.startswith(b"MSH") and len(body) > 8:
        return f"HL7 v2 {_v2_type(body)}, {size}"
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return f"not JSON or HL7 v2, {size}"
    kind = document.get("resourceType") if isinstance(document, dict) else None
    if not isinstance(kind, str) or not _RESOURCE_TYPE.match(kind):
        return f"JSON without a resourceType, {size}"
    entries = document.get("entry")
    count = f" of {len(entries)} entries" if kind == "Bundle" and isinstance(entries, list) else ""
    return f"FHIR {kind}{count}, {size}"


def _v2_type(message: bytes) -> str:
    """MSH-9 (message type^trigger), only if it looks like a code: the rest is never shown."""
    separator = message[3:4]
    fields = message.split(b"\r", 1)[0].split(separator)
    code = fields[8].decode("ascii", "replace") if len(fields) > 8 else ""
    code = code.replace(message[4:5].decode("ascii", "replace"), "^") if len(message) > 4 else code
    return code if _CODE.match(code) else "message (type unreadable)"


@dataclass(frozen=True, slots=True)
class RetryResult:
    """Whether the retried input was taken, and what its path said."""

    taken: bool
    detail: str


async def retry_dead_letter(pipeline: Pipeline, letter: int) -> RetryResult:
    """Send one dead letter back through its path; forget it if the path takes it."""
    store = pipeline.store
    found = store.dead_letter_raw(letter)
    if found is None:
        return RetryResult(False, f"no dead letter {letter}")
    origin, raw = found
    result = await _retry(pipeline, origin, raw)
    if result.taken:
        store.forget_dead_letter(letter)
    store.commit()
    return result


async def _retry(pipeline: Pipeline, origin: str, raw: bytes) -> RetryResult:
    if origin.startswith("delivery "):
        batch = origin.split(" ", 1)[1]
        taken = pipeline.store.delivery_again(batch)
        return RetryResult(taken, "queued for the FHIR server again" if taken else
                           "that delivery is not dead any more")
    # Check first, so that a letter still refused is not kept a second time.
    v2 = raw.lstrip().startswith(b"MSH") or origin.startswith("mllp")
    refused = _v2_refusal(pipeline, raw, origin) if v2 else _fhir_refusal(pipeline, raw, origin)
    if refused is not None:
        return RetryResult(False, f"still refused: {refused.reason}")
    if v2:
        inbox = V2Inbox(pipeline)
        ack, _ = await inbox.accept(raw, f"retry of {origin}")
        await inbox.drain()
        return RetryResult(True, ack.decode("utf-8", "replace").split("\r")[1])
    fhir = FhirInbox(pipeline, None)
    notice = await fhir.accept(raw, f"retry of {origin}")
    await fhir.drain()
    return RetryResult(True, f"taken as {notice.kind}")


def _v2_refusal(pipeline: Pipeline, raw: bytes, origin: str) -> InputError | None:
    read = pipeline.engine.records.read(RawItem(Kind.V2, raw, origin))
    return read.rejected[0] if read.rejected else None


def _fhir_refusal(pipeline: Pipeline, raw: bytes, origin: str) -> InputError | None:
    try:
        document = classify(raw).document
    except NotificationError as error:
        return error
    if document is None:
        return None
    read = pipeline.engine.records.read_document(document, origin, raw)
    return read.rejected[0] if read.rejected else None


def retry_inbox_item(store: Store, item: int) -> bool:
    """A quarantined (or dropped) inbox item back to pending, its attempts reset: the running
    ``serve`` picks it up within its idle poll. False if there is no such item."""
    taken = store.inbox_set_state(item, "pending")
    store.commit()
    return taken


def drop_inbox_item(store: Store, item: int) -> bool:
    """Take an item out of the queue by hand; it is kept as a dead letter, never deleted."""
    found = store.inbox_raw(item)
    if found is None:
        return False
    store.dead_letter(found[0], "dropped from the inbox by an operator", found[1])
    store.inbox_set_state(item, "dropped")
    store.commit()
    return True
