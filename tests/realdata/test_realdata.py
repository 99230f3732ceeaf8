"""Every FHIR file in shared/realdata replays without a crash, and the signals really in it are found.

Expected counts come from an independent walk over the raw JSON (below), not from the adapter.
Positive cases the third-party data lacks are derived by editing copies, and say so.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_engagement.pipeline import Engine
from fhir_engagement.replay import replay
from fhir_engagement.store import SqliteStore
from tests.conftest import REALDATA

# What realdata holds that is not FHIR or not a v2 message: an npm package manifest, Synthea's
# export log, and python-hl7's deliberately malformed batches (segments with no MSH).
NOT_FHIR = {"fhir-r4-core-examples/package.json", "synthea-bulk-10-patients/log.ndjson"}
BAD_V2 = {f"hl7v2/python-hl7-tests/{name}.hl7 message 1"
          for name in ("sample_bad_batch", "sample_bad_file", "sample_bad_file3")}
# UK Core's OutcomeOfAttendance example: an Encounter with outcome 1 "discharged from consultant's
# care", which raises `discharged` (rules.md s.8, never quietly discharge), but with no time at
# all (no period, no meta.lastUpdated) and no subject: a signal that cannot be placed in a child's
# history is rejected with its reason, like any other.
# UK Core's EpisodeOfCare example is the same case (rules.md s.8, "an episode ended"): status
# finished, so a discharge, but no period.end (no period at all) and no meta.lastUpdated.
UNPLACEABLE = {"uk-core/examples-json/Extension-UKCore-OutcomeOfAttendance-Example.json",
               "uk-core/examples-json/UKCore-EpisodeOfCare-SmokingCessationTherapy-Example.json"}
NO_TIME = ("Encounter/Extension-UKCore-OutcomeOfAttendance-Example raises discharged but carries "
           "no time (start, period, performed, meta.lastUpdated)")
NO_END = ("EpisodeOfCare/UKCore-EpisodeOfCare-SmokingCessationTherapy-Example raises discharged "
          "but carries no time (start, period, performed, meta.lastUpdated)")


def _documents() -> Iterator[Any]:
    for path in sorted(REALDATA.rglob("*")):
        if "hl7v2" in path.parts and "expected-fhir-r4" not in path.parts:
            continue
        if path.suffix == ".json":
            yield json.loads(path.read_text(encoding="utf-8-sig"))
        elif path.suffix == ".ndjson":
            yield from (json.loads(line) for line in path.read_text().splitlines() if line.strip())


def _resources(doc: Any) -> Iterator[dict[str, Any]]:
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        for entry in doc.get("entry", []):
            yield from _resources(entry.get("resource"))
    elif isinstance(doc, dict) and "resourceType" in doc:
        yield doc


def _independent_counts() -> Counter[str]:
    """noshow Appointments and emergency Encounters, once per resource id."""
    seen: dict[str, str] = {}
    for doc in _documents():
        for res in _resources(doc):
            key = f"{res['resourceType']}/{res.get('id')}"
            if res["resourceType"] == "Appointment" and res.get("status") == "noshow":
                seen[key] = "not-brought"
            klass = res.get("class")
            codes = [klass.get("code")] if isinstance(klass, dict) else [
                c.get("code") for cc in klass or [] for c in cc.get("coding", [])]
            if res["resourceType"] == "Encounter" and "EMER" in codes and res.get("status") not in (
                    "planned", "cancelled", "entered-in-error"):
                seen[key] = "unscheduled-attendance"
    return Counter(seen.values())


@pytest.fixture(scope="module")
def result(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = SqliteStore(str(tmp_path_factory.mktemp("rd") / "state.sqlite3"))
    try:
        yield replay([REALDATA], engine, store), store.dead_letters()
    finally:
        store.close()


def test_realdata_replays_and_rejects_only_what_is_not_fhir(result: Any) -> None:
    replayed, dead = result
    rejected = {e.where.split(str(REALDATA) + "/")[1].split(":")[0].split(" (")[0]
                for e in replayed.rejected}
    assert rejected == NOT_FHIR | BAD_V2 | UNPLACEABLE
    reasons = {e.reason for e in replayed.rejected}
    assert reasons == {"no resourceType: not a FHIR resource",
                       "a message must start with an MSH segment", NO_TIME, NO_END}
    assert len(dead) == len(replayed.rejected)  # nothing lost: each one is in the dead-letter store


@pytest.fixture(scope="module")
def fhir_only(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The FHIR files alone (HL7 v2 messages have their own tests in tests/hl7v2)."""
    paths = [p for p in sorted(REALDATA.iterdir()) if p.is_dir() and p.name != "hl7v2"]
    paths.append(REALDATA / "hl7v2" / "microsoft-fhir-converter" / "expected-fhir-r4")
    store = SqliteStore(str(tmp_path_factory.mktemp("fhir") / "state.sqlite3"))
    try:
        yield replay(paths, engine, store)
    finally:
        store.close()


def test_realdata_signals_match_an_independent_count(fhir_only: Any) -> None:
    replayed = fhir_only
    want = _independent_counts()
    assert want["not-brought"] == 1  # the MS converter's two S26 bundles share one Appointment id
    assert replayed.stats["signal not-brought"] == want["not-brought"]
    assert replayed.stats["signal unscheduled-attendance"] == want["unscheduled-attendance"]


def test_realdata_noshow_patient_is_an_adult_so_nothing_is_asked(result: Any) -> None:
    replayed, _ = result
    tasks = [e for e in replayed.bundle["entry"] if e["resource"]["resourceType"] == "Task"]
    # The S26 patient was born in 1988; the Synthea children have 5 ED visits, never 4 in 90 days.
    assert tasks == []
    assert replayed.stats["adults excluded"] > 0


def _derived(tmp_path: Path, source: str, edit: Any) -> Path:
    doc = json.loads((REALDATA / source).read_text(encoding="utf-8-sig"))
    edit(doc)
    out = tmp_path / ("derived-" + Path(source).name)
    out.write_text(json.dumps(doc))
    return out


def test_derived_child_copy_of_the_ms_siu_s26_is_not_brought(
    engine: Engine, store: SqliteStore, tmp_path: Path
) -> None:
    """Derived: the S26 patient's birthDate is edited to make them a child."""
    def make_child(doc: dict[str, Any]) -> None:
        for entry in doc["entry"]:
            if entry["resource"]["resourceType"] == "Patient":
                entry["resource"]["birthDate"] = "2015-06-01"

    path = _derived(tmp_path, "hl7v2/microsoft-fhir-converter/expected-fhir-r4/"
                    "SIU-S26-01-expected.json", make_child)
    replayed = replay([path], engine, store)
    codes = [e["resource"]["code"]["coding"][0]["code"] for e in replayed.bundle["entry"]
             if e["resource"]["resourceType"] == "Task"]
    assert codes == ["review-impact"]


def test_derived_uk_core_self_discharge_is_left_against_advice(
    engine: Engine, store: SqliteStore, tmp_path: Path
) -> None:
    """Derived: UK Core's inpatient example with discharge method 1 edited to 7 (by a relative)."""
    def self_discharge(doc: dict[str, Any]) -> None:
        doc["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = "7"

    path = _derived(tmp_path, "uk-core/examples-json/UKCore-Encounter-InpatientEncounter-Example.json",
                    self_discharge)
    replayed = replay([path], engine, store)
    assert replayed.stats["signal left-against-advice"] == 1
    flags = [e["resource"]["code"]["coding"][0]["code"] for e in replayed.bundle["entry"]
             if e["resource"]["resourceType"] == "Flag"]
    assert flags == ["left-against-advice"]
