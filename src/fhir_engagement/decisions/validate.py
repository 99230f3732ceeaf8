"""Check every resource the adapter writes against the FHIR R4 (R4B models) structure.

Full fhir.resources validation costs ~100 us a resource, more than the rest of a replay's work per
event. What the builders write differs from one output to the next only in values the adapter
made itself (dates from isoformat, codes from checked data files, hashes) or copied as strings, so
``OutputValidator`` validates fully the first output of each *shape* (keys, JSON types, empty
strings) and lets later outputs of a shape already proven valid through. Any new key, type or
nesting, from a builder change or from a copied input Reference, is validated again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

__all__ = ["InvalidOutputError", "OutputValidator", "shape_of", "validate_output"]


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


def shape_of(value: Any) -> Any:
    """Keys, JSON types and list element shapes (not lengths), with empty strings told apart."""
    if isinstance(value, dict):
        return tuple((k, shape_of(v)) for k, v in value.items())
    if isinstance(value, list):
        return ("[]", frozenset(shape_of(v) for v in value))
    if isinstance(value, str):
        return "s" if value.strip() else "e"
    return type(value).__name__


class OutputValidator:
    """Validates each new output shape fully; one instance per pipeline."""

    def __init__(self) -> None:
        self._proven: set[Any] = set()
        self.full_validations = 0

    def check(self, resource: Mapping[str, Any]) -> None:
        shape = shape_of(resource)
        if shape in self._proven:
            return
        validate_output(resource)
        self.full_validations += 1
        self._proven.add(shape)
