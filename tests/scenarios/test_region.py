"""The region fixture (fixtures/region/): eight providers, overlapping ids, children who move.

Its expected outputs were worked out by hand from rules.md (fixtures/region/expected.toml, one
comment per decision); they must hold whatever order the files come in.
"""

from __future__ import annotations

import random
import shutil
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fhir_engagement.config import Settings
from fhir_engagement.pipeline import load_engine
from fhir_engagement.replay import ReplayResult, replay
from fhir_engagement.store import SqliteStore
from tests.conftest import SCENARIOS

REGION = SCENARIOS.parent / "region"
EXPECTED = tomllib.loads((REGION / "expected.toml").read_text())
LONDON = ZoneInfo("Europe/London")
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _replay(folder: Path, tmp_path: Path) -> ReplayResult:
    engine = load_engine(Settings.load(REGION / "settings.toml"))
    store = SqliteStore(str(tmp_path / "region.sqlite3"))
    try:
        return replay([folder], engine, store)
    finally:
        store.close()


def _child(reference: dict[str, Any]) -> str:
    """The NHS number a Task.for / Flag.subject names: conditional or identifier form."""
    text = reference.get("reference", "")
    if text.startswith(f"Patient?identifier={NHS}|"):
        return text.rsplit("|", 1)[1]
    assert reference["identifier"]["system"] == NHS, reference
    return str(reference["identifier"]["value"])


def _outputs(result: ReplayResult) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    tasks, flags = [], []
    for entry in result.bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Task":
            due = datetime.fromisoformat(res["restriction"]["period"]["end"]).astimezone(LONDON)
            tasks.append((_child(res["for"]), res["focus"]["identifier"]["value"],
                          res["code"]["coding"][0]["code"], res["priority"], due.date().isoformat()))
        elif res["resourceType"] == "Flag":
            priority = res["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]
            flags.append((_child(res["subject"]), res["code"]["coding"][0]["code"], priority))
    return sorted(tasks), sorted(flags)


def _copy_in_order(tmp_path: Path, order: str) -> Path:
    """The region's files under new names whose sorted order is ``order``'s (folders kept: the
    settings name sources by folder)."""
    files = sorted(p for p in REGION.rglob("*") if p.suffix in (".json", ".ndjson", ".hl7"))
    if order == "reversed":
        files.reverse()
    elif order.startswith("shuffled"):
        random.Random(int(order[-1])).shuffle(files)
    target = tmp_path / order / "region"
    for number, path in enumerate(files):
        place = target / path.parent.relative_to(REGION)
        place.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, place / f"{number:02d}-{path.name}")
    return target


@pytest.mark.parametrize("order", ["as-is", "reversed", "shuffled-1", "shuffled-2", "shuffled-3"])
def test_the_region_gives_the_hand_derived_outputs_in_any_file_order(
    order: str, tmp_path: Path
) -> None:
    folder = REGION if order == "as-is" else _copy_in_order(tmp_path, order)
    result = _replay(folder, tmp_path)
    tasks, flags = _outputs(result)
    assert tasks == sorted((t["child"], t["focus"], t["code"], t["priority"], t["due"])
                           for t in EXPECTED["task"])
    assert flags == sorted((f["child"], f["code"], f["priority"]) for f in EXPECTED["flag"])
    assert [e.reason for e in result.rejected] == []
    assert EXPECTED["rejected"] == 0


def test_no_region_output_carries_an_invented_identifier_system(tmp_path: Path) -> None:
    text = str(_replay(REGION, tmp_path).bundle)
    assert "urn:hl7v2" not in text
    assert "fixture" not in text  # nothing of the single-source fixtures leaks in
