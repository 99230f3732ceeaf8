"""Every code system and identifier system the adapter reads or writes is on the allow-list.

The list is the table in mappings/README.md ("Allowed systems": URI and where it is published).
URIs come from mappings/ (``system`` entries and the system part of ``"system|code"`` references;
extension URLs are not code systems and are left out) and from the outputs of a replay of
fixtures/ (every ``system`` anywhere in the Bundle's resources). Anything not listed fails: a code
system must be published somewhere before the adapter may depend on it (codes.md).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_engagement.config import Settings
from fhir_engagement.pipeline import Engine, load_engine
from fhir_engagement.replay import replay
from fhir_engagement.store import SqliteStore
from tests.conftest import FIXTURES, MAPPINGS

_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*(\S[^|]*?)\s*\|\s*$")


def allow_list(readme: Path = MAPPINGS / "README.md") -> dict[str, str]:
    """URI -> source link, from the table under the '## Allowed systems' heading."""
    text = readme.read_text()
    section = text.split("## Allowed systems", 1)[1].split("\n## ", 1)[0]
    return {m[1]: m[2] for line in section.splitlines() if (m := _ROW.match(line))}


def unlisted(uris: set[str], allowed: dict[str, str]) -> list[str]:
    """The URIs no row allows (a row's ``{name}`` matches one ``:``-free segment)."""
    patterns = [re.compile("".join("[^:|]+" if part.startswith("{") else re.escape(part)
                                   for part in re.split(r"(\{[a-z]+\})", uri)) + "$")
                for uri in allowed]
    return sorted(u for u in uris if not any(p.match(u) for p in patterns))


def _strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)
    elif isinstance(value, str):
        yield key, value


def mapping_systems(root: Path = MAPPINGS) -> dict[str, str]:
    """System URI -> the mapping file that names it (extension URLs under [extensions] excluded)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.toml")):
        doc = tomllib.loads(path.read_text())
        doc.pop("extensions", None)
        for key, value in _strings(doc):
            if key == "system":
                found.setdefault(value, str(path.relative_to(root)))
            elif "|" in value and re.match(r"^(https?|urn):", value):
                found.setdefault(value.split("|", 1)[0], str(path.relative_to(root)))
    return found


def output_systems(bundle: dict[str, Any]) -> set[str]:
    """Every ``system`` in the Bundle's resources (Coding and Identifier alike)."""
    return {v for e in bundle["entry"] for k, v in _strings(e["resource"]) if k == "system"}


def test_the_allow_list_table_parses_and_names_a_source_for_each() -> None:
    allowed = allow_list()
    assert "http://snomed.info/sct" in allowed
    assert all(link for link in allowed.values())


def test_every_system_in_the_mappings_is_allowed() -> None:
    allowed = allow_list()
    found = mapping_systems()
    assert found  # the walk sees the shipped files
    assert {uri: found[uri] for uri in unlisted(set(found), allowed)} == {}


def test_every_system_a_replay_of_the_fixtures_writes_is_allowed(
    engine: Engine, store: SqliteStore
) -> None:
    """The region's sources declare their own identifier systems: the settings extend the list."""
    settings = Settings.load(FIXTURES / "region" / "settings.toml")
    declared = {system: f"sources.{source.name}" for source in settings.sources
                for system in (source.identifier_system, source.patient_identifier_system)
                if system}
    result = replay([FIXTURES], load_engine(settings), store)
    written = output_systems(result.bundle)
    assert "https://fhir-engagement.org/fhir/Id/task" in written
    assert set(declared) & written  # the region's outputs name its events by their own systems
    assert unlisted(written, {**allow_list(), **declared}) == []


def test_an_unlisted_system_fails(tmp_path: Path) -> None:
    """The check can fail: an invented system in a mapping file is not on the list."""
    (tmp_path / "codes").mkdir()
    (tmp_path / "codes" / "x.toml").write_text(
        'description = "x"\n[[code]]\nsystem = "https://invented.example/cs"\ncode = "1"\n')
    assert unlisted({"https://invented.example/cs"}, allow_list()) == ["https://invented.example/cs"]
    assert unlisted({"urn:hl7v2:RXQ:encounter", "urn:hl7v2:RXQ"}, allow_list()) == ["urn:hl7v2:RXQ"]
    assert mapping_systems(tmp_path) == {"https://invented.example/cs": "codes/x.toml"}


@pytest.mark.parametrize("line", ["| `https://a.example/cs` | https://a.example |"])
def test_a_table_row_is_read(tmp_path: Path, line: str) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Allowed systems\n\n| URI | source |\n|---|---|\n{line}\n\n## next\n")
    assert allow_list(readme) == {"https://a.example/cs": "https://a.example"}
