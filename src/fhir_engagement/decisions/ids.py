"""Deterministic identifiers: the same child and triggering event always give the same outputs.

A re-sent notification, a replayed file or a v2 message and its FHIR twin re-find what was already
written (conditional create/update on these identifiers) instead of writing it again. Ids are
hashes, so no NHS number or local patient id appears in an output identifier.
"""

from __future__ import annotations

import hashlib
import uuid

from fhir_engagement.model import HOME, split_key

__all__ = [
    "DEVICE_SYSTEM",
    "FLAG_SYSTEM",
    "LETTER_SYSTEM",
    "NHS_NUMBER_SYSTEM",
    "TASK_SYSTEM",
    "describe",
    "event_reference",
    "flag_id",
    "full_url",
    "letter_id",
    "provenance_id",
    "reference_for",
    "task_id",
]

BASE = "https://fhir-engagement.org/fhir"
FLAG_SYSTEM = f"{BASE}/Id/flag"
TASK_SYSTEM = f"{BASE}/Id/task"
DEVICE_SYSTEM = f"{BASE}/Id/device"
LETTER_SYSTEM = f"{BASE}/Id/communication-request"
_NAMESPACE = uuid.UUID("6f3c2a52-8f7e-4c1e-9a0b-3f9d6c1e2b7a")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def flag_id(child: str, kind: str) -> str:
    """One engagement and one over-engagement Flag per child."""
    return f"fe-flag-{_digest(child, kind)}"


def task_id(child: str, event_key: str, action: str, situation: str = "") -> str:
    """One Task per action per triggering event (a retraction asks again, with its own id)."""
    marker = situation if situation == "retracted" else ""
    return f"fe-task-{_digest(child, event_key, action, marker)}"


def letter_id(task: str, copy: str) -> str:
    """One letter draft per WNB-letter Task and copy (``parent``, ``gp``): found from the Task id."""
    return f"fe-letter-{_digest(task, copy)}"


def provenance_id(child: str, event_key: str, signal: str, rule_id: str) -> str:
    """One Provenance per decision."""
    return f"fe-prov-{_digest(child, event_key, signal, rule_id)}"


def full_url(resource_id: str) -> str:
    """A stable urn:uuid for a resource in a transaction Bundle.

    The adapter's own ids end in a 128-bit hex digest, laid out as an RFC 9562 version-8
    (custom) uuid: uuid5 of the id costs ~10x more, and replay calls this for every output."""
    d = resource_id.rsplit("-", 1)[-1]
    if len(d) == 32:  # our ids: fe-<kind>-<32 hex>
        variant = "89ab"[int(d[16], 16) & 3]
        return f"urn:uuid:{d[:8]}-{d[8:12]}-8{d[13:16]}-{variant}{d[17:20]}-{d[20:]}"
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, resource_id)}"


NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def reference_for(key: str) -> dict[str, object]:
    """A Reference a FHIR server can resolve, from a patient/event key (never a urn:uuid).

    A child known by NHS number is named by the conditional reference R4 allows inside a
    transaction (http.html#trules), not by an identifier-only Reference: servers that index only
    literal references (HAPI's default) never show an identifier-only subject under
    ``Task?patient=``. The outbox makes it literal (``Patient/{id}``) against the target server
    before posting (live/patients.py); a dry run keeps it as it is.
    """
    if key.startswith("nhs:"):
        return {"reference": f"Patient?identifier={NHS_NUMBER_SYSTEM}|{key[4:]}",
                "type": "Patient"}
    if key.startswith("id:"):
        system, _, value = key[3:].partition("|")
        return {"identifier": {"system": system, "value": value}, "type": "Patient"}
    return {"reference": key}


def event_reference(key: str) -> dict[str, object]:
    """An earlier event (Provenance evidence) as a Reference: literal on the home server,
    absolute on the FHIR server it came from, else a description (never a made-up URL)."""
    path, namespace = split_key(key)
    if namespace == HOME:
        return {"reference": path}
    if namespace.startswith(("http://", "https://")) and ":" not in path:
        return {"reference": f"{namespace}/{path}"}
    return {"display": describe(key)}


def describe(key: str) -> str:
    """A resource key in words: ``Appointment/1 at trust-a``."""
    path, namespace = split_key(key)
    return f"{path} at {namespace}" if namespace else path
