"""Outputs -> one FHIR transaction Bundle of conditional writes.

Tasks are conditional creates (If-None-Exist on their identifier), the Flag a conditional update on
its identifier, Provenance a PUT to its deterministic id: replaying the same decision is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from fhir_engagement.decisions.ids import FLAG_SYSTEM, LETTER_SYSTEM, TASK_SYSTEM, full_url

__all__ = ["entry", "transaction"]

_ORDER = {"Flag": 0, "Task": 1, "CommunicationRequest": 2, "Provenance": 3}
# Outputs created once, found again by their identifier (a letter draft is the Task's companion).
_CREATED = {"Task": TASK_SYSTEM, "CommunicationRequest": LETTER_SYSTEM}


def entry(output_id: str, kind: str, resource: dict[str, Any]) -> dict[str, Any]:
    """One transaction entry with the conditional request that makes it idempotent."""
    if kind == "Flag":
        request = {"method": "PUT", "url": f"Flag?identifier={FLAG_SYSTEM}|{output_id}"}
    elif kind in _CREATED:
        request = {"method": "POST", "url": kind,
                   "ifNoneExist": f"identifier={_CREATED[kind]}|{output_id}"}
    else:
        request = {"method": "PUT", "url": f"{kind}/{output_id}"}
    return {"fullUrl": full_url(output_id), "resource": resource, "request": request}


def transaction(outputs: Iterable[tuple[str, str, bytes]]) -> dict[str, Any]:
    """A transaction Bundle: Flags, Tasks, letter drafts, then Provenance (each in decision
    order)."""
    rows = sorted(outputs, key=lambda o: _ORDER.get(o[1], 3))
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry(oid, kind, orjson.loads(raw)) for oid, kind, raw in rows],
    }
