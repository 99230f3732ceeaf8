"""The dead-letter store for a person: list what was kept, show one, retry it through its path.

Nothing the adapter could not use is lost: it sits in the store with where it came from and why.
Retrying sends it back through the path it came by (a v2 message through the v2 inbox, a FHIR
push through the FHIR inbox, a refused delivery back to the outbox, a replayed record through the
reader), and forgets it only when that path takes it. Every path reads through ingest/records.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_engagement.errors import InputError, NotificationError
from fhir_engagement.ingest.notifications import classify
from fhir_engagement.ingest.records import Kind, RawItem
from fhir_engagement.live.fhir_inbox import FhirInbox
from fhir_engagement.live.v2_inbox import V2Inbox
from fhir_engagement.pipeline import Pipeline

__all__ = ["RetryResult", "retry_dead_letter"]


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
        ack, _ = inbox.accept(raw, f"retry of {origin}")
        await inbox.drain()
        return RetryResult(True, ack.decode("utf-8", "replace").split("\r")[1])
    fhir = FhirInbox(pipeline, None)
    notice = fhir.accept(raw, f"retry of {origin}")
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
