"""The region fixture (issue 11 item 9): eight providers, one child's pattern counted across them.

fixtures/region/expected.toml was worked out by hand from shared/guidance/rules.md (s3-5, s7); its
README names the providers and children. The region is replayed with its own settings
(fixtures/region/settings.toml, [[sources]]) in several file orders: the outputs must not change.
"""

from __future__ import annotations

import random
import re
import shutil
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import pytest

from fhir_engagement.config import Settings
from fhir_engagement.pipeline import load_engine
from fhir_engagement.replay import ReplayResult, replay
from fhir_engagement.store import SqliteStore
from tests.conftest import FIXTURES

REGION = FIXTURES / "region"
SETTINGS = REGION / "settings.toml"
EXPECTED = tomllib.loads((REGION / "expected.toml").read_text())
LONDON = ZoneInfo("Europe/London")
DATA = (".json", ".hl7")
ORDERS = ["folder", "sorted", "reversed", "shuffle-1", "shuffle-2", "shuffle-3"]


def _replay(paths: list[Path], store: SqliteStore) -> ReplayResult:
    """The one call into the adapter: if replay comes to need the settings too, change only this."""
    settings = Settings.load(SETTINGS)
    return replay(paths, load_engine(settings), store)


def _child(ref: dict[str, Any]) -> str:
    """The NHS number (or, for a child without one, the identifier value) a reference carries."""
    text = unquote(ref.get("reference", ""))
    if "identifier=" in text:
        return text.split("identifier=", 1)[1].split("&", 1)[0].split("|", 1)[-1]
    ident = ref.get("identifier")
    if isinstance(ident, dict) and ident.get("value"):
        return str(ident["value"])
    return text  # a literal reference alone: kept, so a failure shows it


def _tasks(bundle: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    out = []
    for entry in bundle["entry"]:
        task = entry["resource"]
        if task["resourceType"] != "Task":
            continue
        focus = task["focus"].get("identifier", {}).get("value") or task["focus"].get("reference")
        due = datetime.fromisoformat(task["restriction"]["period"]["end"]).astimezone(LONDON)
        out.append((_child(task["for"]), focus, task["code"]["coding"][0]["code"],
                    task["priority"], due.date().isoformat()))
    return sorted(out)


def _flags(bundle: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((_child(f["subject"]), f["code"]["coding"][0]["code"],
                   f["extension"][0]["valueCodeableConcept"]["coding"][0]["code"])
                  for f in (e["resource"] for e in bundle["entry"]) if f["resourceType"] == "Flag")


def _ordered(root: Path, order: str) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix in DATA)
    if order == "reversed":
        files.reverse()
    elif order.startswith("shuffle-"):
        random.Random(1109 + int(order[-1])).shuffle(files)
    return files


@pytest.mark.parametrize("order", ORDERS)
def test_region_replays_to_the_hand_worked_outputs(order: str, tmp_path: Path) -> None:
    if order == "folder":
        paths = [REGION]
    else:  # a copy, folder structure kept, its files named one by one in this order
        copy = tmp_path / order / "region"
        shutil.copytree(REGION, copy)
        paths = _ordered(copy, order)
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    try:
        result = _replay(paths, store)
    finally:
        store.close()
    rejected = EXPECTED["rejected"]
    assert len(result.rejected) == rejected["count"], [str(e) for e in result.rejected]
    assert all(rejected["file_in"] in e.where for e in result.rejected)
    assert _tasks(result.bundle) == sorted(
        (t["child"], t["focus"], t["code"], t["priority"], t["due"]) for t in EXPECTED["task"])
    assert _flags(result.bundle) == sorted(
        (f["child"], f["code"], f["priority"]) for f in EXPECTED["flag"])


def test_the_shuffles_are_real_reorderings() -> None:
    orders = [tuple(_ordered(REGION, o)) for o in ORDERS[1:]]
    assert len(set(orders)) == len(orders)


# -- the fixture itself (these hold today, before the sources feature lands) ---------------------
def _mod11(value: str) -> bool:
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return False
    check = 11 - sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1), strict=True)) % 11
    return (0 if check == 11 else check) == int(value[9])


def test_the_settings_name_eight_providers_and_every_file_has_one() -> None:
    sources = tomllib.loads(SETTINGS.read_text())["sources"]
    assert len(sources) == 8
    assert len({s["name"] for s in sources}) == len({s["ods"] for s in sources}) == 8
    assert [s["care"] for s in sources].count("primary") == 1
    for path in _ordered(REGION, "sorted"):
        held = [s for s in sources if any(path.parent.as_posix().endswith(f) for f in s["folders"])]
        assert len(held) == 1, path


def test_every_nhs_number_in_the_region_is_valid_and_expected() -> None:
    found = set()
    for path in _ordered(REGION, "sorted"):
        found |= set(re.findall(r"(?<!\d)9998\d{6}(?!\d)", path.read_text()))
    assert found
    assert all(_mod11(n) for n in found), sorted(found)
    named = {t["child"] for t in EXPECTED["task"]} - {"1001"}
    assert named <= found
