"""Conditional Patient references in outputs, and what they become once the target server answered.

The pipeline names a child known by NHS number with ``Patient?identifier=system|value`` (a
conditional reference, ids.py): it means the same Patient on every server. Before a batch is
posted, the outbox asks the target server which Patient that is and this module rewrites the
batch's resources: one match becomes the literal ``Patient/{id}`` (which every server indexes for
``Task?patient=``); no match or several become an identifier-only Reference, because R4 fails the
whole transaction on a conditional reference that does not resolve to exactly one resource, and a
safeguarding Task must still be written. Pure: the answers are passed in.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

__all__ = ["Criterion", "patient_criteria", "resolve_patients"]

Criterion = tuple[str, str]  # (identifier system, value) of a Patient?identifier= reference
_PREFIX = "Patient?identifier="


def _criterion(reference: object) -> Criterion | None:
    """``(system, value)`` of ``Patient?identifier=system|value``; None for any other reference.

    Only this one form is read: a search with other parameters is not ours and is left alone.
    """
    if not isinstance(reference, str) or not reference.startswith(_PREFIX):
        return None
    token = unquote(reference.removeprefix(_PREFIX))
    system, bar, value = token.partition("|")
    if not bar or not system or not value or "&" in token:
        return None
    return system, value


def _references(value: Any) -> Iterator[dict[str, Any]]:
    """Every Reference-shaped object (a dict with a ``reference``) anywhere in a resource."""
    if isinstance(value, dict):
        if "reference" in value:
            yield value
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def patient_criteria(resource: Mapping[str, Any]) -> set[Criterion]:
    """The Patients a resource names by conditional reference, to be looked up on the server."""
    return {c for r in _references(resource) if (c := _criterion(r["reference"])) is not None}


def resolve_patients(
    resource: Mapping[str, Any], answers: Mapping[Criterion, str | None]
) -> dict[str, Any]:
    """A copy of ``resource`` with each conditional Patient reference the answers cover rewritten.

    ``answers[c]`` is the server's Patient id for criterion ``c``, or None when the server holds
    no such Patient or several (then an identifier Reference: the transaction must not fail on
    it). A criterion with no answer is left conditional, as a dry run writes it.
    """
    out = copy.deepcopy(dict(resource))
    for ref in _references(out):
        found = _criterion(ref["reference"])
        if found is None or found not in answers:
            continue
        patient = answers[found]
        del ref["reference"]
        if patient is None:
            ref["identifier"] = {"system": found[0], "value": found[1]}
        else:
            ref["reference"] = f"Patient/{patient}"
        ref["type"] = "Patient"
    return out
