"""HL7 v2 through replay: each mapped message type gives the signal its FHIR twin would.

Expected Tasks follow shared/guidance/rules.md section 5 (cells named in each test).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_engagement.pipeline import Engine
from fhir_engagement.replay import replay
from fhir_engagement.store import SqliteStore
from tests.conftest import REALDATA
from tests.hl7v2.messages import adt, nhs_number, siu

NHS = nhs_number(4242)


def _replay(tmp_path: Path, engine: Engine, store: SqliteStore, *messages: bytes) -> Any:
    folder = tmp_path / "feed"
    folder.mkdir(exist_ok=True)
    for i, raw in enumerate(messages):
        (folder / f"{i:03d}.hl7").write_bytes(raw)
    return replay([folder], engine, store)


def _tasks(result: Any) -> list[tuple[str, str]]:
    return sorted((e["resource"]["code"]["coding"][0]["code"], e["resource"]["priority"])
                  for e in result.bundle["entry"] if e["resource"]["resourceType"] == "Task")


def test_s26_is_not_brought_whatever_sch25_says(tmp_path: Path, engine: Engine,
                                                store: SqliteStore) -> None:
    # single WNB, no known status: review-impact routine.
    result = _replay(tmp_path, engine, store,
                     siu("S26", "m1", "A100", "20260302100000", NHS, status="Cancelled"))
    assert result.stats["signal not-brought"] == 1
    assert _tasks(result) == [("review-impact", "routine")]
    task = next(e["resource"] for e in result.bundle["entry"]
                if e["resource"]["resourceType"] == "Task")
    assert task["for"] == {"reference": f"Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{NHS}",
                           "type": "Patient"}
    assert task["focus"]["identifier"]["value"] == "A100"
    assert task["owner"]["identifier"]["value"] == "C1234567"  # AIP-3: who expected the child


def test_s14_with_filler_status_noshow_is_not_brought(tmp_path: Path, engine: Engine,
                                                      store: SqliteStore) -> None:
    result = _replay(tmp_path, engine, store,
                     siu("S14", "m1", "A101", "20260302100000", NHS, status="Noshow"))
    assert result.stats["signal not-brought"] == 1


def test_a03_against_advice_then_a13_retracts(tmp_path: Path, engine: Engine,
                                              store: SqliteStore) -> None:
    # left against advice, no known status: Flag PM; same-day-follow-up stat; inform-gp.
    result = _replay(tmp_path, engine, store,
                     adt("A03", "d1", "V9", "20260304150000", NHS, disposition="07"),
                     adt("A13", "d2", "V9", "20260304160000", NHS))
    assert result.stats["signal left-against-advice"] == 1
    assert result.stats["retracted left-against-advice"] == 1
    assert _tasks(result) == [("inform-gp", "routine"), ("review-impact", "routine"),
                              ("same-day-follow-up", "stat")]


def test_nhs_discharge_method_and_local_codes_per_facility(tmp_path: Path, engine: Engine,
                                                           store: SqliteStore) -> None:
    """Bare digits 2/6/7 mean the NHS discharge method only where a facility's table says so
    (NUBC 02 is a transfer, table 0112 06 home health); table 0112 '07' holds everywhere."""
    result = _replay(tmp_path, engine, store,
                     adt("A03", "d1", "V1", "20260304150000", NHS, disposition="6"),
                     adt("A03", "d2", "V2", "20260305150000", nhs_number(77), disposition="7",
                         facility="RAJ12"),
                     adt("A03", "d3", "V3", "20260306150000", nhs_number(78), disposition="Home"),
                     adt("A03", "d4", "V4", "20260307150000", nhs_number(79), disposition="2"),
                     adt("A03", "d5", "V5", "20260308150000", nhs_number(80), disposition="2",
                         facility="RAJ12"),
                     adt("A03", "d6", "V6", "20260309150000", nhs_number(81), disposition="6",
                         facility="RAJ12"),
                     adt("A03", "d7", "V7", "20260310150000", nhs_number(82), disposition="07"))
    assert result.stats["signal left-against-advice"] == 4  # d2, d5, d6 (RAJ12) and d7 (07)


def test_a04_emergency_is_an_unscheduled_attendance(tmp_path: Path, engine: Engine,
                                                    store: SqliteStore) -> None:
    visits = [adt("A04", f"e{i}", f"ED{i}", f"202603{10 + i:02d}190000", NHS, patient_class="E")
              for i in range(4)]
    result = _replay(tmp_path, engine, store, *visits)
    assert result.stats["signal unscheduled-attendance"] == 4
    assert _tasks(result) == [("named-doctor-review", "routine")]  # 4 in 90 days


def test_unmapped_types_are_ignored_and_bad_ones_rejected_with_the_field(
    tmp_path: Path, engine: Engine, store: SqliteStore
) -> None:
    a08 = adt("A08", "u1", "V1", "20260304150000", NHS)
    no_pid = b"MSH|^~\\&|PAS|RXQ|X|Y|20260304||SIU^S26|b1|P|2.5\rSCH|1|2\r"
    result = _replay(tmp_path, engine, store, a08, no_pid)
    assert result.stats["v2 messages ignored"] == 1
    assert [(e.reason, e.where.rsplit("(", 1)[-1]) for e in result.rejected] == [
        ("no PID segment: the message names no patient", "PID)")]


def test_a_v2_message_and_its_fhir_twin_count_once(tmp_path: Path, engine: Engine,
                                                   store: SqliteStore) -> None:
    twin = {"resourceType": "Appointment", "id": "fhir-a100", "status": "noshow",
            "identifier": [{"system": "https://rxq.nhs.uk/appointment", "value": "A100"}],
            "start": "2026-03-02T10:00:00Z",
            "participant": [{"actor": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                      "value": NHS}}, "status": "declined"}]}
    (tmp_path / "feed").mkdir()
    (tmp_path / "feed" / "twin.json").write_text(json.dumps(twin))
    result = _replay(tmp_path, engine, store, siu("S26", "m1", "A100", "20260302100000", NHS))
    assert result.stats["signal not-brought"] == 1
    assert result.stats["duplicates"] == 1
    assert _tasks(result) == [("review-impact", "routine")]


def test_realdata_v2_replays_and_the_barts_child_copy_escalates(
    tmp_path: Path, engine: Engine, store: SqliteStore
) -> None:
    """Derived: the two Barts (renalware) S26 messages with PID-7 edited to make a child."""
    sources = sorted((REALDATA / "hl7v2" / "renalware-nhs").glob("siu_s26_*.hl7"))
    derived = [p.read_bytes().replace(b"||19870101|", b"||20150101|") for p in sources]
    assert all(b"20150101" in d for d in derived)
    result = _replay(tmp_path, engine, store, *derived)
    # same child (MRN 10769859), two misses 7 days apart: single (review-impact routine), then
    # repeat/none (Flag repeat PL, letter, review-impact urgent, GP, HV).
    assert _tasks(result) == [("inform-gp", "routine"), ("inform-health-visitor", "routine"),
                              ("review-impact", "routine"), ("review-impact", "urgent"),
                              ("send-wnb-letter", "routine")]


@pytest.mark.parametrize("patient_class", ["B", "R"])
def test_obstetric_and_recurring_patient_classes_are_not_ambulatory(
    tmp_path: Path, engine: Engine, store: SqliteStore, patient_class: str
) -> None:
    """PV1-2 B/R are not AMB: a finished one is not a planned attendance (nor an emergency)."""
    result = _replay(tmp_path, engine, store,
                     adt("A03", "c1", "VC1", "20260304150000", NHS, patient_class=patient_class))
    assert result.stats.get("signal attended", 0) == 0
    assert result.stats.get("signal unscheduled-attendance", 0) == 0
