"""Sources and identity in a replay (rules.md s.7): ids mean something only inside their source.

Each case writes small inputs from two or more sources with overlapping ids into a folder and
replays them into a real SQLite store. Expected Tasks and Flags come from rules.md s.5: a first
not-brought with no known status is ``review-impact`` alone; a second in 12 months is "repeat"
(Flag repeat PL, letter, review-impact urgent, GP, health visitor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_engagement.config import Settings
from fhir_engagement.ingest.references import NHS_NUMBER_SYSTEM
from fhir_engagement.pipeline import Engine, load_engine
from fhir_engagement.replay import ReplayResult, replay
from fhir_engagement.store import SqliteStore

A, B = "9990001073", "9434765919"  # valid modulus-11 NHS numbers, one per child
REPEAT = {"send-wnb-letter", "review-impact", "inform-gp", "inform-health-visitor"}


def _patient(pid: str | None, nhs: str | None, birth: str = "2018-04-01") -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "birthDate": birth}
    if pid:
        res["id"] = pid
    if nhs:
        res["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": nhs}]
    return res


def _noshow(aid: str, patient: str, start: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": aid, "status": "noshow", "start": start,
            "participant": [{"actor": {"reference": patient}, "status": "accepted"}], **extra}


def _searchset(base: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]}


def _write(folder: Path, name: str, doc: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(orjson.dumps(doc))


def _replay(folder: Path, engine: Engine, tmp_path: Path) -> ReplayResult:
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(str(tmp_path / "sources.sqlite3"))
    try:
        return replay([folder], engine, store)
    finally:
        store.close()


def _tasks(result: ReplayResult) -> list[dict[str, Any]]:
    return [e["resource"] for e in result.bundle["entry"]
            if e["resource"]["resourceType"] == "Task"]


def _codes_for(result: ReplayResult, nhs: str) -> set[str]:
    return {t["code"]["coding"][0]["code"] for t in _tasks(result) if nhs in orjson.dumps(
        t["for"]).decode()}


def _flags(result: ReplayResult) -> list[dict[str, Any]]:
    return [e["resource"] for e in result.bundle["entry"]
            if e["resource"]["resourceType"] == "Flag"]


def test_patient_1_at_two_trusts_is_two_children_each_with_a_single_miss(
    engine: Engine, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    _write(inputs, "a.json", _searchset("https://a.example/fhir", _patient("1", A),
                                        _noshow("1", "Patient/1", "2026-03-02T10:00:00Z")))
    _write(inputs, "b.json", _searchset("https://b.example/fhir", _patient("1", B),
                                        _noshow("1", "Patient/1", "2026-03-03T10:00:00Z")))
    result = _replay(inputs, engine, tmp_path)
    assert result.rejected == []
    # Both Appointment/1s are events (neither a duplicate of the other), each a first miss.
    assert _codes_for(result, A) == {"review-impact"}
    assert _codes_for(result, B) == {"review-impact"}
    assert _flags(result) == []
    focus = {t["focus"]["reference"] for t in _tasks(result)}
    assert focus == {"https://a.example/fhir/Appointment/1", "https://b.example/fhir/Appointment/1"}


def test_one_child_under_two_ids_at_two_trusts_has_one_pattern(
    engine: Engine, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    _write(inputs, "a.json", _searchset("https://a.example/fhir", _patient("7", A),
                                        _noshow("1", "Patient/7", "2026-03-02T10:00:00Z")))
    _write(inputs, "c.json", _searchset("https://c.example/fhir", _patient("A12", A),
                                        _noshow("9", "Patient/A12", "2026-05-04T10:00:00Z")))
    result = _replay(inputs, engine, tmp_path)
    assert _codes_for(result, A) == REPEAT  # the second miss, at another trust, is a repeat
    (flag,) = _flags(result)
    assert flag["code"]["coding"][0]["code"] == "disengagement-repeat"


def test_a_transaction_post_with_a_urn_uuid_patient_and_no_id_is_read(
    engine: Engine, tmp_path: Path
) -> None:
    urn = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"  # HL7's transaction example shape
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": urn, "resource": _patient(None, A, "2025-09-01"),
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": f"identifier={NHS_NUMBER_SYSTEM}|{A}"}},
        {"fullUrl": "urn:uuid:0b8a2c1e-0000-4000-8000-00000000a001",
         "resource": {k: v for k, v in _noshow("x", urn, "2026-03-02T10:00:00Z").items()
                      if k != "id"},
         "request": {"method": "POST", "url": "Appointment"}}]}
    inputs = tmp_path / "in"
    _write(inputs, "tx.json", bundle)
    result = _replay(inputs, engine, tmp_path)
    assert result.rejected == []
    # An infant (under 1): "vulnerable"; a single miss gives review-impact urgent and HV.
    assert _codes_for(result, A) == {"review-impact", "inform-health-visitor"}


def test_a_record_claiming_a_second_nhs_number_is_kept_aside_not_merged(
    engine: Engine, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    _write(inputs, "a.json", _searchset("https://a.example/fhir", _patient("1", A),
                                        _noshow("1", "Patient/1", "2026-03-02T10:00:00Z")))
    _write(inputs, "b.json", _searchset("https://a.example/fhir", _patient("1", B)))
    result = _replay(inputs, engine, tmp_path)
    (error,) = result.rejected
    assert "another NHS number" in error.reason
    assert result.stats["identity conflicts"] == 1
    assert _codes_for(result, A) == {"review-impact"}
    assert _codes_for(result, B) == set()


def test_a_child_first_seen_without_an_nhs_number_joins_the_history_when_it_arrives(
    engine: Engine, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    _write(inputs, "a.json", _searchset("https://a.example/fhir", _patient("7", A),
                                        _noshow("1", "Patient/7", "2026-03-02T10:00:00Z")))
    _write(inputs, "d1.json", _searchset("https://d.example/fhir", _patient("5", None),
                                         _noshow("2", "Patient/5", "2026-04-06T10:00:00Z")))
    _write(inputs, "d2.json", _searchset("https://d.example/fhir", _patient("5", A)))
    result = _replay(inputs, engine, tmp_path)
    assert result.rejected == []
    assert _codes_for(result, A) == REPEAT


@pytest.fixture
def region(tmp_path: Path) -> Engine:
    path = tmp_path / "settings.toml"
    path.write_text('''
[[sources]]
name = "trust-a"
ods = "RHM"
folders = ["feeds/trust-a"]
identifier_system = "https://a.example/Id/appointment"

[[sources]]
name = "trust-b"
ods = "RN5"
folders = ["feeds/trust-b"]
''')
    return load_engine(Settings.load(path))


def test_a_folder_names_the_source_and_the_provider_by_ods_code(
    region: Engine, tmp_path: Path
) -> None:
    appointment = _noshow("1", "Patient/1", "2026-03-02T10:00:00Z", identifier=[
        {"system": "https://a.example/Id/appointment", "value": "APT-1"}])
    for trust, nhs in (("trust-a", A), ("trust-b", B)):
        folder = tmp_path / "in" / "feeds" / trust
        _write(folder, "p.json", _patient("1", nhs))
        _write(folder, "a.json", appointment)
    store = SqliteStore(str(tmp_path / "region.sqlite3"))
    try:
        result = replay([tmp_path / "in"], region, store)
        providers = {row.provider for row in store.appointment_counts(["not-brought"],
                                                                       ["not-brought"])}
    finally:
        store.close()
    assert _codes_for(result, A) == _codes_for(result, B) == {"review-impact"}
    assert providers == {"RHM", "RN5"}
    focus = sorted(orjson.dumps(t["focus"]).decode() for t in _tasks(result))
    assert '"value":"APT-1"' in focus[0]
    assert all("urn:hl7v2" not in f for f in focus)


def test_a_source_says_which_element_is_its_service(tmp_path: Path) -> None:
    """Two misses 14 months apart, same specialty, different clinic (serviceType). By the shipped
    order the specialty is the service: 2 consecutive at one service, a repeat. A source whose
    clinics are its services says so, and each miss is then a single (rules.md s.3, s.7)."""
    def miss(aid: str, start: str, clinic: str) -> dict[str, Any]:
        return _noshow(aid, "Patient/1", start, specialty=[{"coding": [
            {"system": "http://snomed.info/sct", "code": "394537008"}]}], serviceType=[
            {"coding": [{"system": "https://a.example/clinic", "code": clinic}]}])
    inputs = tmp_path / "in" / "feeds" / "trust-a"
    _write(inputs, "p.json", _patient("1", A, "2015-01-01"))
    _write(inputs, "a1.json", miss("1", "2025-01-06T10:00:00Z", "asthma"))
    _write(inputs, "a2.json", miss("2", "2026-03-02T10:00:00Z", "allergy"))
    codes = []
    for service in ("", 'service = { Appointment = ["serviceType"] }'):
        path = tmp_path / f"settings{len(codes)}.toml"
        path.write_text(f'[[sources]]\nname = "trust-a"\nfolders = ["feeds/trust-a"]\n{service}\n')
        result = _replay(tmp_path / "in", load_engine(Settings.load(path)), tmp_path / path.stem)
        codes.append(_codes_for(result, A))
    assert codes == [REPEAT | {"review-impact"}, {"review-impact"}]
