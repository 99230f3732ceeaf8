"""A child's chronology: found by NHS number only, in order, audited before it is shown."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from fhir_engagement.errors import ReportError
from fhir_engagement.pipeline import Engine
from fhir_engagement.reports.audit import Auditor, requester, subject_hash
from fhir_engagement.reports.chronology import (
    Chronology,
    chronology_bundle,
    chronology_text,
    open_chronology,
)
from fhir_engagement.store import SqliteStore
from tests.reports.conftest import LONDON
from tests.reports.dataset import CHILDREN, UNKNOWN_NHS

C1, C5, ADULT = CHILDREN["c1"][0] or "", CHILDREN["c5"][0] or "", CHILDREN["a1"][0] or ""
KEY = bytes(range(32))


def _open(path: Path, number: str, engine: Engine, who: str = "Dr Report Test") -> Chronology:
    store = SqliteStore(str(path))
    try:
        return open_chronology(store, number, engine.systems, Auditor(KEY, who), "text")
    finally:
        store.close()


def _accesses(path: Path) -> list[tuple[str, str, str, str]]:
    store = SqliteStore(str(path))
    try:
        return [(a.who, a.action, a.subject, a.detail) for a in store.accesses()]
    finally:
        store.close()


def test_events_and_actions_in_order(store_copy: Path, engine: Engine) -> None:
    chron = _open(store_copy, C1, engine)
    # c1: a miss (single: review-impact), an attendance, a second miss (repeat: the Flag is
    # raised, then the four Tasks of repeat-wnb/none in the rules table's order).
    assert [(e.kind, e.code, e.about) for e in chron.entries] == [
        ("event", "not-brought", "Appointment/rp-a-1"),
        ("task", "review-impact", "Appointment/rp-a-1"),
        ("event", "attended", "Appointment/rp-a-2"),
        ("event", "not-brought", "Appointment/rp-a-3"),
        ("flag", "disengagement-repeat", "Appointment/rp-a-3"),
        ("task", "send-wnb-letter", "Appointment/rp-a-3"),
        ("task", "review-impact", "Appointment/rp-a-3"),
        ("task", "inform-gp", "Appointment/rp-a-3"),
        ("task", "inform-health-visitor", "Appointment/rp-a-3"),
    ]
    assert [e.at.isoformat() for e in chron.entries][:3] == [
        "2025-01-13T10:00:00+00:00", "2025-01-13T10:00:00+00:00", "2025-01-20T10:00:00+00:00"]
    assert "rule repeat-wnb/none" in chron.entries[4].text


def test_the_read_is_audited_with_who_and_a_keyed_hash_of_the_child(
    store_copy: Path, engine: Engine
) -> None:
    assert _accesses(store_copy) == []
    _open(store_copy, C1, engine)
    store = SqliteStore(str(store_copy))
    try:
        expected = subject_hash(KEY, f"nhs:{C1}")
        assert [(a.who, a.action, a.subject) for a in store.accesses()] == [
            ("Dr Report Test", "chronology", expected)]
    finally:
        store.close()
    with closing(sqlite3.connect(store_copy)) as db:
        dump = "\n".join(db.iterdump())  # the whole store, as SQL text
    audit_lines = [line for line in dump.splitlines() if line.startswith('INSERT INTO "audit"')]
    assert len(audit_lines) == 1
    assert C1 not in audit_lines[0]
    assert C1 in dump  # the number is in the store (aliases): the check above can fail


def test_a_retracted_miss_stays_in_the_chronology_marked(store_copy: Path, engine: Engine) -> None:
    chron = _open(store_copy, C5, engine)
    on_the_day = [(e.kind, e.code, e.retracted) for e in chron.entries
                  if e.about == "Appointment/rp-a-17"]
    # Both signals of the event, then the review-impact of the miss and the one the correction
    # asked for (nothing is deleted).
    assert on_the_day == [("event", "attended", False), ("event", "not-brought", True),
                          ("task", "review-impact", False), ("task", "review-impact", False)]
    assert "(retracted by a later correction)" in chronology_text(chron, engine.systems, LONDON)


def test_the_bundle_is_valid_fhir_with_the_list_first(store_copy: Path, engine: Engine) -> None:
    chron = _open(store_copy, C5, engine)
    bundle = chronology_bundle(chron, engine.systems)
    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    listing = bundle["entry"][0]["resource"]
    assert listing["resourceType"] == "List"
    assert listing["subject"]["identifier"]["value"] == C5
    assert len(listing["entry"]) == len(chron.entries)
    assert [e.get("deleted", False) for e in listing["entry"]].count(True) == 1
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"][1:]]
    assert sorted(set(kinds)) == ["Provenance", "Task"]
    urls = {e["fullUrl"] for e in bundle["entry"]}
    tasks = [e["item"]["reference"] for e in listing["entry"] if "engagement-action" in
             e.get("flag", {}).get("coding", [{}])[0].get("system", "")]
    assert len(tasks) == 2
    assert set(tasks) <= urls  # the List's Task items resolve inside the Bundle


def test_text_names_the_child_and_the_flag_now(store_copy: Path, engine: Engine) -> None:
    text = chronology_text(_open(store_copy, C1, engine), engine.systems, LONDON)
    lines = text.splitlines()
    assert lines[0] == (f"Engagement chronology for NHS number {C1[:3]} {C1[3:6]} {C1[6:]} "
                        "(born 2015-05-05)")
    assert "audit log: Dr Report Test" in lines[1]
    assert lines[2].startswith("Flag now: Child not brought: repeated (disengagement-repeat), "
                               "priority PL, active since 2025-0")
    assert lines[4].startswith("2025-01-13 10:00  Was not brought at Organization/trust-a")


def test_spaces_in_the_number_are_accepted(store_copy: Path, engine: Engine) -> None:
    spaced = f"{C1[:3]} {C1[3:6]} {C1[6:]}"
    assert len(_open(store_copy, spaced, engine).entries) == 9


def test_an_adults_events_are_not_shown(store_copy: Path, engine: Engine) -> None:
    assert _open(store_copy, ADULT, engine).entries == ()


def test_unknown_patient_is_an_error_that_does_not_repeat_the_number(
    store_copy: Path, engine: Engine
) -> None:
    with pytest.raises(ReportError, match="no child with this NHS number") as caught:
        _open(store_copy, UNKNOWN_NHS, engine)
    assert UNKNOWN_NHS not in str(caught.value)
    assert _accesses(store_copy) == []  # nothing was shown, so nothing to audit


def test_an_invalid_nhs_number_is_refused(store_copy: Path, engine: Engine) -> None:
    wrong = C1[:9] + str((int(C1[9]) + 1) % 10)  # the check digit is off by one
    with pytest.raises(ReportError, match="not a valid NHS number") as caught:
        _open(store_copy, wrong, engine)
    assert wrong not in str(caught.value)


def test_requester_is_the_configured_operator_with_the_os_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGNAME", "os-user-x")
    monkeypatch.setattr("getpass.getuser", lambda: "os-user-x")
    assert requester() == "os-user-x"
    assert requester("  ") == "os-user-x"
    assert requester("os-user-x") == "os-user-x"
    assert requester(" Dr A ") == "Dr A (OS user os-user-x)"


def test_the_read_is_an_audit_event_naming_the_child_reader_and_adapter(
    store_copy: Path, engine: Engine
) -> None:
    event = _open(store_copy, C1, engine).audit_event
    AuditEvent.model_validate(event)
    assert (event["type"]["code"], event["action"]) == ("110110", "R")
    (entity,) = event["entity"]
    assert entity["what"]["identifier"] == {"system": "https://fhir.nhs.uk/Id/nhs-number",
                                            "value": C1}
    assert entity["detail"][0]["valueString"] == subject_hash(KEY, f"nhs:{C1}")
    assert event["agent"][0]["who"]["identifier"]["value"] == "Dr Report Test"
    assert event["agent"][0]["requestor"] is True
    assert event["source"]["observer"]["identifier"]["value"] == "fhir-engagement"
