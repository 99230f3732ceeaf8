"""Validate an input resource we are about to act on, against R4 (R4B models) or R5.

Only resources that raise an actionable signal pass through here: full validation costs ~70x a
JSON parse. The version is guessed from R5-only elements; a resource valid in either is accepted.
Known real-world quirks are tolerated first (7-digit fractional seconds, app-4's 'no-show').
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir.resources import get_fhir_model_class as r5_model
from fhir.resources.R4B import get_fhir_model_class as r4_model
from pydantic import ValidationError

from fhir_engagement.errors import RecordError

__all__ = ["validate_input"]

# Elements only R5 has, per resource type (R4 Encounters have subject and class too).
_R5_ONLY = {
    "Appointment": frozenset({"cancellationReason", "cancellationDate", "subject", "class",
                              "virtualService"}),
    "Encounter": frozenset({"actualPeriod", "admission", "subjectStatus", "virtualService"}),
}


def validate_input(resource: Mapping[str, Any], origin: str) -> None:
    """Raise RecordError (with the JSON path) when the resource is valid in neither R4 nor R5."""
    rtype = str(resource.get("resourceType"))
    looks_r5 = _looks_r5(resource)
    first, second = (r5_model, r4_model) if looks_r5 else (r4_model, r5_model)
    try:
        first(rtype).model_validate(resource)
        return
    except ValidationError as exc:
        error = exc
    except KeyError as exc:
        raise RecordError(origin, f"unknown resource type {rtype}") from exc
    try:
        second(rtype).model_validate(resource)
    except ValidationError:
        issue = error.errors()[0]
        path = ".".join(str(p) for p in issue["loc"])
        version = "R5" if looks_r5 else "R4"
        raise RecordError(f"{origin} ({rtype}.{path})",
                          f"not a valid FHIR {version} {rtype}: {issue['msg']}") from error


def _looks_r5(resource: Mapping[str, Any]) -> bool:
    only = _R5_ONLY.get(str(resource.get("resourceType")), frozenset())
    return isinstance(resource.get("class"), list) or not only.isdisjoint(resource)
