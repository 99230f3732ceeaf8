"""The HL7 v2 mapping files' format (mappings/hl7v2/*.toml, tables/*.toml), and loading them.

One file per message structure, as the converters keep one template per message type: which
fields give the event's id, time, performer and service, and which slot codes it carries, fixed or
looked up in a table. No expressions: a field reference and a table name are all a mapping holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fhir_engagement.config import load_model, locate
from fhir_engagement.errors import MappingError
from fhir_engagement.model import SLOTS, STATUS_SYSTEMS

__all__ = ["SlotSource", "V2Mapping", "V2Mappings", "load_v2_mappings"]

_FIELD = re.compile(r"^[A-Z][A-Z0-9]{2}(\[[1-9][0-9]{0,3}\])?-\d{1,3}(\.\d{1,2}){0,2}$")


def _check_fields(values: list[str]) -> list[str]:
    for value in values:
        if not _FIELD.match(value):
            raise ValueError(f"'{value}' is not a field reference like 'PID-3.1' or 'AIS[2]-3.1'")
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlotSpec(_Strict):
    code: str | None = None
    field: str | None = None
    table: str | None = None


class MessageFile(_Strict):
    messages: list[str] = Field(min_length=1)
    resource: str
    id: list[str] = Field(min_length=1)
    time: list[str] = Field(min_length=1)
    performer: str | None = None
    service: list[str] = []
    slots: dict[str, SlotSpec]

    @field_validator("id", "time", "service")
    @classmethod
    def _fields(cls, values: list[str]) -> list[str]:
        return _check_fields(values)


class TableFile(_Strict):
    description: str = ""
    map: dict[str, str] = {}
    source: dict[str, dict[str, str]] = {}


@dataclass(frozen=True, slots=True)
class SlotSource:
    """Where one slot's codes come from: a fixed code, or a field looked up in a table."""

    slot: str
    fixed: str | None
    field: str | None
    table: dict[str, str]
    by_source: dict[str, dict[str, str]]

    def codes(self, value: str, facility: str) -> str | None:
        """The slot code for a field value (tables compare case-insensitively)."""
        if self.fixed is not None:
            return self.fixed
        key = value.strip().lower()
        if not key:
            return None
        local = self.by_source.get(facility, {})
        return local.get(key) or self.table.get(key) or f"text:{key}"


@dataclass(frozen=True, slots=True)
class V2Mapping:
    """How one message type becomes an event."""

    file: str
    resource: str
    id_fields: tuple[str, ...]
    time_fields: tuple[str, ...]
    performer: str | None
    service_fields: tuple[str, ...]
    slots: tuple[SlotSource, ...]


@dataclass(frozen=True, slots=True)
class V2Mappings:
    """Mappings by ``TYPE^TRIGGER``; a message type with none is acknowledged and ignored."""

    by_type: dict[str, V2Mapping]

    def for_type(self, message_type: str) -> V2Mapping | None:
        return self.by_type.get(message_type)


def load_v2_mappings(folder: Path) -> V2Mappings:
    """Load every message file and the tables they name; MappingError on the first fault."""
    tables = {p.stem: _load_table(p) for p in sorted((folder / "tables").glob("*.toml"))}
    by_type: dict[str, V2Mapping] = {}
    for path in sorted(folder.glob("*.toml")):
        spec, text = load_model(MessageFile, path, MappingError)
        mapping = _compile(spec, path, text, tables)
        for message_type in spec.messages:
            if message_type in by_type:
                where = locate(text, ("messages",))
                raise MappingError(str(path), where, f"{message_type} is also mapped by "
                                   f"{by_type[message_type].file}")
            by_type[message_type] = mapping
    return V2Mappings(by_type)


def _load_table(path: Path) -> TableFile:
    spec, _ = load_model(TableFile, path, MappingError)
    return spec


def _compile(spec: MessageFile, path: Path, text: str, tables: dict[str, TableFile]) -> V2Mapping:
    if spec.resource not in SLOTS:
        raise MappingError(str(path), locate(text, ("resource",)), f"unknown resource "
                           f"'{spec.resource}'")
    slots = tuple(_slot(name, s, spec.resource, path, text, tables) for name, s in spec.slots.items())
    return V2Mapping(path.name, spec.resource, tuple(spec.id), tuple(spec.time), spec.performer,
                     tuple(spec.service), slots)


def _slot(
    name: str, spec: SlotSpec, resource: str, path: Path, text: str, tables: dict[str, TableFile]
) -> SlotSource:
    where = locate(text, ("slots", name))
    if name not in SLOTS[resource]:
        raise MappingError(str(path), where, f"unknown slot '{name}' for {resource}")
    if (spec.code is None) == (spec.field is None):
        raise MappingError(str(path), where, "give either code or field (with a table)")
    if spec.code is not None:
        return SlotSource(name, _code(spec.code, name, resource, str(path), where), None, {}, {})
    if spec.field is None or not _FIELD.match(spec.field) or spec.table not in tables:
        raise MappingError(str(path), where, f"needs a field reference and one of the tables "
                           f"{sorted(tables)}")
    table = tables[spec.table]

    def resolve(mapping: dict[str, str]) -> dict[str, str]:
        return {k.lower(): _code(v, name, resource, str(path), where) for k, v in mapping.items()}

    return SlotSource(name, None, spec.field, resolve(table.map),
                      {src: resolve(m) for src, m in table.source.items()})


def _code(ref: str, slot: str, resource: str, path: str, where: str) -> str:
    if "|" in ref:
        return ref
    if slot == "status":
        return f"{STATUS_SYSTEMS[resource]}|{ref}"
    raise MappingError(path, where, f"'{ref}' needs a system ('system|code')")
