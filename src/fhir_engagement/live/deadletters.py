"""The dead-letter store for a person: list what was kept, show one, retry it through its path.

Nothing the adapter could not use is lost: it sits in the store with where it came from and why.
Retrying sends it back through the path it came by (a v2 message through the v2 inbox, a FHIR
push through the FHIR inbox, a refused delivery back to the outbox, a replayed record through the
reader), and forgets it only when that path takes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_engagement.errors import InputError
from fhir_engagement.ingest.hl7v2 import read_v2
from fhir_engagement.ingest.notifications import classify
from fhir_engagement.ingest.v2parse import parse_message
from fhir_engagement.live.inbox import FhirInbox, V2Inbox
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
    try:
        if raw.lstrip().startswith(b"MSH") or origin.startswith("mllp"):
            read_v2(parse_message(raw), pipeline.engine.v2, origin)
        else:
            _readable(pipeline, classify(raw).document, origin)
    except InputError as error:
        return RetryResult(False, f"still refused: {error.reason}")
    if raw.lstrip().startswith(b"MSH") or origin.startswith("mllp"):
        inbox = V2Inbox(pipeline)
        ack, _ = inbox.accept(raw, f"retry of {origin}")
        inbox.drain()
        return RetryResult(True, ack.decode("utf-8", "replace").split("\r")[1])
    fhir = FhirInbox(pipeline, None)
    notice = fhir.accept(raw, f"retry of {origin}")
    await fhir.drain()
    return RetryResult(True, f"taken as {notice.kind}")


def _readable(pipeline: Pipeline, document: dict[str, object] | None, origin: str) -> None:
    """Raise the first error the reader finds: retrying must not keep a letter twice."""
    if document is None:
        return
    for record in pipeline.engine.reader.read(document, origin):
        if isinstance(record, InputError):
            raise record
