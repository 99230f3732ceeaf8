"""Validate an input resource we are about to act on, against R4 (R4B models) or R5.

Only resources that raise an actionable signal pass through here: full validation costs ~70x a
JSON parse. The version is guessed from R5-only elements; a resource valid in either is accepted.
Known real-world quirks are tolerated first (7-digit fractional seconds, app-4's 'no-show').

Full validation (fhir.resources, ~0.5 ms) is done once per resource *shape* (keys, JSON types,
nesting: decisions/validate.py ``shape_of``). What a model checks beyond its primitives depends
on the shape alone: unknown keys, required elements, one value of a choice [x], nulls in lists.
So a shape proven valid leaves the primitives' value checks (dates and their calendar, codes,
ids, URIs, integer ranges...), and those are made on every later resource of the shape, by the
very types the model declares for those fields (``_Plan``), in a fraction of the time. A value
that fails them is validated fully again, so what is refused, and the message, are as before.
"""

from __future__ import annotations

import threading
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fhir.resources import get_fhir_model_class as r5_model
from fhir.resources.R4B import get_fhir_model_class as r4_model
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic import TypeAdapter, ValidationError

from fhir_engagement.decisions.validate import shape_of
from fhir_engagement.errors import RecordError

__all__ = ["validate_input"]

# Elements only R5 has, per resource type (R4 Encounters have subject and class too).
_R5_ONLY = {
    "Appointment": frozenset({"cancellationReason", "cancellationDate", "subject", "class",
                              "virtualService"}),
    "Encounter": frozenset({"actualPeriod", "admission", "subjectStatus", "virtualService"}),
}


_MAX_SHAPES = 4096  # proven shapes kept; past it, new shapes are validated fully every time
_NO_PLAN = None  # a shape the plan cannot cover (a contained resource): always validated fully


def validate_input(resource: Mapping[str, Any], origin: str) -> None:
    """Raise RecordError (with the JSON path) when the resource is valid in neither R4 nor R5."""
    rtype = str(resource.get("resourceType"))
    looks_r5 = _looks_r5(resource)
    shape = (rtype, looks_r5, shape_of(resource))
    plan = _PROVEN.get(shape)
    if plan is not None and plan.passes(resource):
        return
    _validate_fully(resource, origin, rtype, looks_r5)
    if shape not in _PROVEN and len(_PROVEN) < _MAX_SHAPES:
        _PROVEN[shape] = _plan_for(resource, rtype, looks_r5)


def _validate_fully(resource: Mapping[str, Any], origin: str, rtype: str, looks_r5: bool) -> None:
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


# -- the plan: a proven shape's primitive fields, each checked by the type its model declares -----
Check = Callable[[Any], Any]
Leaf = tuple[tuple[str, ...], Check]  # a path ("*" for each item of a list) and its field's check


class _Plan:
    """The primitive fields of one proven shape, with the model that accepted it."""

    __slots__ = ("leaves",)

    def __init__(self, leaves: list[Leaf]) -> None:
        self.leaves = leaves

    def passes(self, resource: Mapping[str, Any]) -> bool:
        try:
            for path, check in self.leaves:
                for value in _at(resource, path):
                    check(value)
        except Exception:  # whatever a check raises, full validation says what it is
            return False
        return True


_PROVEN: dict[Any, _Plan | None] = {}
_ADAPTERS: dict[Any, Check] = {}
_LOCK = threading.Lock()


def _plan_for(resource: Mapping[str, Any], rtype: str, looks_r5: bool) -> _Plan | None:
    """The plan of a resource just validated fully: its leaves under the model that accepts it
    (the guessed version's, else the other's); None when a leaf's type cannot be told."""
    for get_model in (r5_model, r4_model) if looks_r5 else (r4_model, r5_model):
        model = get_model(rtype)
        try:
            model.model_validate(resource)
        except ValidationError:
            continue
        leaves: list[Leaf] = []
        try:
            _leaves(resource, model, (), leaves, root=True)
        except _UnplannedError:
            return _NO_PLAN
        return _Plan(leaves)
    return _NO_PLAN


class _UnplannedError(Exception):
    """This part of a resource is not covered by a plan: the shape is validated fully always."""


def _leaves(value: Mapping[str, Any], model: Any, path: tuple[str, ...], out: list[Leaf],
            root: bool = False) -> None:
    fields = _fields(model)
    for key, item in value.items():
        if key in ("resourceType", "resource_type"):
            if root and key == "resourceType":
                continue
            raise _UnplannedError(key)  # checked against the model by value: not a shape
        field = fields.get(key)
        if field is None:
            raise _UnplannedError(key)
        name, annotation = field
        inner, listed = _unwrapped(annotation)
        if isinstance(inner, type) and issubclass(inner, FhirBase):
            if issubclass(inner, FhirElementOrResourceBase):
                raise _UnplannedError(key)  # a resource of any type (contained): by its resourceType
            _complex(item, inner.get_model_klass(), (*path, key), listed, out)
        else:
            out.append(((*path, key), _adapter(model, name, annotation)))


def _complex(item: Any, model: Any, path: tuple[str, ...], listed: bool, out: list[Leaf]) -> None:
    items = item if listed and isinstance(item, list) else [item]
    where = (*path, "*") if listed and isinstance(item, list) else path
    for one in items:
        if isinstance(one, dict):
            _leaves(one, model, where, out)
    _dedupe(out)


def _dedupe(out: list[Leaf]) -> None:
    """One check a path: the items of a list add the same leaves again."""
    seen: set[tuple[str, ...]] = set()
    kept = [leaf for leaf in out if not (leaf[0] in seen or seen.add(leaf[0]))]
    out[:] = kept


def _fields(model: Any) -> dict[str, tuple[str, Any]]:
    """JSON key -> (field name, annotation); the names are taken too (populate_by_name)."""
    found: dict[str, tuple[str, Any]] = {}
    for name, info in model.model_fields.items():
        found[name] = (name, info.annotation)
        if info.alias:
            found[info.alias] = (name, info.annotation)
    return found


def _unwrapped(annotation: Any) -> tuple[Any, bool]:
    """The element type under Optional and List, and whether it is a list."""
    listed = False
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (typing.Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
        elif origin is list and len(args) == 1:
            annotation, listed = args[0], True
        else:
            return annotation, listed


def _adapter(model: Any, name: str, annotation: Any) -> Check:
    """The field's own type as a validator: the same checks the model makes of its value."""
    key = (model, name)
    check = _ADAPTERS.get(key)
    if check is None:
        with _LOCK:
            check = _ADAPTERS.setdefault(key, TypeAdapter(annotation).validate_python)
    return check


def _at(value: Any, path: tuple[str, ...]) -> Iterator[Any]:
    """Every value at ``path`` ("*": each item of a list); none where a branch is absent."""
    if not path:
        yield value
        return
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(value, list):
            for item in value:
                yield from _at(item, rest)
    elif isinstance(value, dict) and head in value:
        yield from _at(value[head], rest)
