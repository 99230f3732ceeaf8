"""The three CodeSystems the adapter publishes (codesystems/*.json), read for displays and definitions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from fhir_engagement.errors import ConfigError

__all__ = ["ACTION", "CONCERN", "SIGNAL", "CodeSystems", "load_codesystems"]

ACTION = "https://fhir-engagement.org/fhir/CodeSystem/engagement-action"
CONCERN = "https://fhir-engagement.org/fhir/CodeSystem/engagement-concern"
SIGNAL = "https://fhir-engagement.org/fhir/CodeSystem/engagement-signal"


@dataclass(frozen=True, slots=True)
class Concept:
    code: str
    display: str
    definition: str


@dataclass(frozen=True, slots=True)
class CodeSystems:
    """Concepts by system URL, then by code."""

    concepts: dict[str, dict[str, Concept]]

    def display(self, system: str, code: str) -> str:
        return self.concepts[system][code].display

    def definition(self, system: str, code: str) -> str:
        return self.concepts[system][code].definition


def load_codesystems(folder: Path) -> CodeSystems:
    """Read every CodeSystem JSON file in ``folder``."""
    concepts: dict[str, dict[str, Concept]] = {}
    for path in sorted(folder.glob("CodeSystem-*.json")):
        try:
            doc = orjson.loads(path.read_bytes())
            concepts[doc["url"]] = {
                c["code"]: Concept(c["code"], c["display"], c.get("definition", c["display"]))
                for c in doc["concept"]
            }
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(str(path), "", f"not a CodeSystem the adapter can read: {exc}") from exc
    for url in (ACTION, CONCERN, SIGNAL):
        if url not in concepts:
            raise ConfigError(str(folder), "", f"no CodeSystem with url {url}")
    return CodeSystems(concepts)
