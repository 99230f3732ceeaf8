"""Serve's first decision made ready at start-up, not on the first no-show.

The first output of each kind is validated against its fhir.resources model (decisions/
validate.py), and those models are imported and built by pydantic on first use: ~110 ms on a
quiet machine, ~190 ms on the shared one, on the event loop, for the first no-show after every
start (and the push queued behind it). ``warm`` makes that first use here, before ``serve``
listens: a few synthetic no-shows for a synthetic child (no NHS number,
no name) through a pipeline of its own on a throwaway in-memory store. Nothing of it reaches
the served store, its counts or the FHIR server.
"""

from __future__ import annotations

import logging

import orjson

from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.store import SqliteStore

__all__ = ["warm"]

_LOG = logging.getLogger(__name__)
_NO_SHOWS = ("2026-01-05", "2026-02-02", "2026-03-02")  # three: the Flag's escalation too


def _documents() -> list[dict[str, object]]:
    child = {"resourceType": "Patient", "id": "warm-up", "birthDate": "2016-05-05"}
    visits = [{"resourceType": "Appointment", "id": f"warm-up-{day}", "status": "noshow",
               "start": f"{day}T10:00:00Z",
               "participant": [{"actor": {"reference": "Patient/warm-up"}, "status": "declined"}]}
              for day in _NO_SHOWS]
    return [child, *visits]


def warm(engine: Engine) -> int:
    """Decide the synthetic no-shows; how many outputs that made (for the test)."""
    store = SqliteStore(":memory:")
    try:
        pipeline = Pipeline(engine, store, store.start_run("warm-up"))
        for document in _documents():
            read = engine.records.read_document(document, "warm-up", orjson.dumps(document))
            pipeline.apply(read.records, b"", "warm-up")
        return pipeline.queued
    except Exception as exc:  # only a head start: serve works without it, just slower at first
        _LOG.warning("the start-up warm-up failed (%s); the first decision will be slower",
                     type(exc).__name__)
        return 0
    finally:
        store.close()
