"""Check every resource the adapter writes against the FHIR R4 (R4B models) structure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

__all__ = ["InvalidOutputError", "validate_output"]


class InvalidOutputError(ValueError):
    """A built resource is not valid FHIR R4: a defect in a builder or in the data it copied."""


def validate_output(resource: Mapping[str, Any]) -> None:
    """Raise InvalidOutputError naming the first wrong element."""
    model = get_fhir_model_class(str(resource["resourceType"]))
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise InvalidOutputError(f"{resource['resourceType']}.{path}: {first['msg']}") from exc
