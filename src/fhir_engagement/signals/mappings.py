"""The mapping files' format, and loading them: mappings/fhir/*.toml, codes/*.toml, local/*.toml.

Everything is read and checked at start-up; a wrong file stops the program with a MappingError
naming the file, key path and line. The result is compiled into frozensets of ``system|code``
strings so that applying a rule to an event is a few set intersections.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fhir_engagement.config import load_model, locate
from fhir_engagement.errors import MappingError
from fhir_engagement.model import (
    REFERENCE_SLOTS,
    SERVICE_ELEMENTS,
    SIGNAL_CODES,
    SLOTS,
    STATUS_SYSTEMS,
    StatusRule,
)

__all__ = ["CompiledRule", "Mappings", "load_mappings"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CodeEntry(_Strict):
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str = ""


class CodeSetFile(_Strict):
    description: str = ""
    text: list[str] = []
    code: list[CodeEntry] = []


class MappingRule(_Strict):
    id: str = Field(min_length=1)
    signal: str
    when: dict[str, list[str]] = Field(min_length=1)
    unless: dict[str, list[str]] = {}


class ResourceFile(_Strict):
    resource: str
    extensions: dict[str, list[str]] = {}
    service: list[str] = []
    retract: dict[str, list[str]] = {}
    rule: list[MappingRule] = []


class StatusDef(_Strict):
    name: str
    codes: list[str]
    ended_by: list[str] = []


class StatusFile(_Strict):
    status: list[StatusDef]


class LocalCodes(_Strict):
    text: list[str] = []
    code: list[CodeEntry] = []


class LocalFile(_Strict):
    source: str = Field(min_length=1)
    codes: dict[str, LocalCodes] = {}


Codes = frozenset[str]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One mapping rule ready to apply: every ``when`` slot must meet its codes, no ``unless`` slot."""

    id: str
    signal: str
    when: tuple[tuple[str, Codes], ...]
    unless: tuple[tuple[str, Codes], ...]


@dataclass(slots=True)
class Mappings:
    """All mapping data, compiled; ``rules_for`` merges a source's local codes in, once per source."""

    digest: str
    files: tuple[str, ...]
    extensions: dict[str, dict[str, tuple[str, ...]]]
    services: dict[str, tuple[str, ...]]
    statuses: tuple[StatusRule, ...]
    codesets: dict[str, Codes]
    displays: dict[str, dict[str, str]]
    _raw_rules: dict[str, tuple[tuple[MappingRule, Path, str], ...]]
    _local: tuple[tuple[str, dict[str, Codes]], ...]
    _cache: dict[tuple[str, str], tuple[CompiledRule, ...]] = field(default_factory=dict)

    def rules_for(self, resource_type: str, source: str = "") -> tuple[CompiledRule, ...]:
        """The compiled rules for one resource type, with local codes of the matching source."""
        key = (resource_type, source)
        rules = self._cache.get(key)
        if rules is None:
            sets = self._codesets_for(source)
            rules = tuple(
                _compile(rule, i, resource_type, sets, path, text)
                for i, (rule, path, text) in enumerate(self._raw_rules.get(resource_type, ()))
            )
            self._cache[key] = rules
        return rules

    def retraction(self, resource_type: str, source: str = "") -> CompiledRule | None:
        """The rule saying which later versions take back earlier signals (None: never)."""
        for rule in self.rules_for(resource_type, source):
            if rule.signal == "retract":
                return rule
        return None

    def _codesets_for(self, source: str) -> dict[str, Codes]:
        merged = dict(self.codesets)
        for prefix, extra in self._local:
            if source.startswith(prefix):
                for name, codes in extra.items():
                    merged[name] = merged.get(name, frozenset()) | codes
        return merged


def load_mappings(root: Path) -> Mappings:
    """Load and check every mapping file under ``root``; raise MappingError on the first fault."""
    codesets, files, displays = _load_codesets(root / "codes")
    local = _load_local(root / "local", codesets)
    raw_rules: dict[str, tuple[tuple[MappingRule, Path, str], ...]] = {}
    extensions: dict[str, dict[str, tuple[str, ...]]] = {}
    services: dict[str, tuple[str, ...]] = {}
    for path in sorted((root / "fhir").glob("*.toml")):
        if path.name == "status.toml":
            continue
        spec, text = load_model(ResourceFile, path, MappingError)
        _check_resource(spec, path, text)
        raw_rules[spec.resource] = tuple((r, path, text) for r in spec.rule)
        if spec.retract:
            retract = MappingRule(id=f"{spec.resource}-correction", signal="retract",
                                  when=spec.retract)
            raw_rules[spec.resource] += ((retract, path, text),)
        extensions[spec.resource] = {k: tuple(v) for k, v in spec.extensions.items()}
        services[spec.resource] = tuple(spec.service)
        for i, rule in enumerate(spec.rule):  # compile now so every error surfaces at start-up
            _compile(rule, i, spec.resource, codesets, path, text)
        files.append(path)
    statuses = _load_statuses(root / "fhir" / "status.toml", codesets)
    files.append(root / "fhir" / "status.toml")
    files.extend(sorted((root / "local").glob("*.toml")))
    return Mappings(
        digest=_digest(files),
        files=tuple(str(p.relative_to(root)) for p in files),
        extensions=extensions,
        services=services,
        statuses=statuses,
        codesets=codesets,
        displays=displays,
        _raw_rules=raw_rules,
        _local=local,
    )


def _load_codesets(
    folder: Path,
) -> tuple[dict[str, Codes], list[Path], dict[str, dict[str, str]]]:
    sets: dict[str, Codes] = {}
    displays: dict[str, dict[str, str]] = {}
    paths = sorted(folder.glob("*.toml"))
    for path in paths:
        spec, _ = load_model(CodeSetFile, path, MappingError)
        sets[path.stem] = _codes_of(spec.code, spec.text)
        displays[path.stem] = {f"{c.system}|{c.code}": c.display or c.code for c in spec.code}
    return sets, paths, displays


def _codes_of(entries: list[CodeEntry], texts: list[str]) -> Codes:
    return frozenset(f"{c.system}|{c.code}" for c in entries) | frozenset(
        f"text:{t.strip().lower()}" for t in texts
    )


def _load_local(folder: Path, codesets: dict[str, Codes]) -> tuple[tuple[str, dict[str, Codes]], ...]:
    out = []
    for path in sorted(folder.glob("*.toml")):
        spec, text = load_model(LocalFile, path, MappingError)
        for name in spec.codes:
            if name not in codesets:
                raise MappingError(str(path), locate(text, ("codes", name)), f"no code set '{name}'")
        out.append((spec.source, {n: _codes_of(c.code, c.text) for n, c in spec.codes.items()}))
    return tuple(out)


def _check_resource(spec: ResourceFile, path: Path, text: str) -> None:
    if spec.resource not in SLOTS:
        known = ", ".join(sorted(SLOTS))
        raise MappingError(str(path), locate(text, ("resource",)), f"resource must be one of {known}")
    allowed = SLOTS[spec.resource] | REFERENCE_SLOTS
    for slot in spec.extensions:
        if slot not in allowed:
            raise MappingError(str(path), locate(text, ("extensions", slot)), f"unknown slot '{slot}'")
    _check_service(spec, path, text)
    seen: set[str] = set()
    for i, rule in enumerate(spec.rule):
        if rule.id in seen:
            raise MappingError(str(path), locate(text, ("rule", i, "id")), f"duplicate id '{rule.id}'")
        seen.add(rule.id)
        if rule.signal not in SIGNAL_CODES | {"retract"}:
            where = locate(text, ("rule", i, "signal"))
            raise MappingError(str(path), where, f"unknown signal '{rule.signal}'")


def _check_service(spec: ResourceFile, path: Path, text: str) -> None:
    """The `service` order names only elements the reader knows for this resource, once each."""
    allowed = SERVICE_ELEMENTS.get(spec.resource, frozenset())
    for i, element in enumerate(spec.service):
        where = locate(text, ("service", i))
        if element == "serviceCategory":
            raise MappingError(str(path), where, "serviceCategory is a category of services, "
                               "never the service itself (rules.md section 7)")
        if element not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise MappingError(str(path), where, f"unknown service element '{element}' for "
                               f"{spec.resource} (known: {known})")
        if element in spec.service[:i]:
            raise MappingError(str(path), where, f"service element '{element}' named twice")


def _compile(
    rule: MappingRule, index: int, resource: str, sets: dict[str, Codes], path: Path, text: str
) -> CompiledRule:
    def side(part: dict[str, list[str]], name: str) -> tuple[tuple[str, Codes], ...]:
        out = []
        for slot, refs in part.items():
            keys = ("retract", slot) if rule.signal == "retract" else ("rule", index, name, slot)
            where = locate(text, keys)
            if slot not in SLOTS[resource]:
                raise MappingError(str(path), where, f"rule '{rule.id}': unknown slot '{slot}'")
            out.append((slot, _resolve(refs, slot, resource, sets, str(path), where)))
        return tuple(out)

    return CompiledRule(rule.id, rule.signal, side(rule.when, "when"), side(rule.unless, "unless"))


def _resolve(
    refs: list[str], slot: str, resource: str, sets: dict[str, Codes], path: str, where: str
) -> Codes:
    codes: set[str] = set()
    for ref in refs:
        if ref.startswith("@"):
            if ref[1:] not in sets:
                raise MappingError(path, where, f"no code set '{ref[1:]}' in mappings/codes/")
            codes |= sets[ref[1:]]
        elif "|" in ref:
            codes.add(ref)
        elif slot == "status":
            codes.add(f"{STATUS_SYSTEMS[resource]}|{ref}")
        else:
            raise MappingError(path, where, f"'{ref}' needs a system ('system|code') or '@set'")
    return frozenset(codes)


def _load_statuses(path: Path, sets: dict[str, Codes]) -> tuple[StatusRule, ...]:
    spec, text = load_model(StatusFile, path, MappingError)
    out = []
    for i, item in enumerate(spec.status):
        where = locate(text, ("status", i))
        codes = _resolve(item.codes, "codes", "", sets, str(path), where)
        ended = _resolve(item.ended_by, "ended_by", "", sets, str(path), where)
        out.append(StatusRule(item.name, codes, ended))
    return tuple(out)


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]
