"""Deterministic identifiers: the same child and event always re-find the same outputs."""

from __future__ import annotations

import re
import uuid

import pytest

from fhir_engagement.decisions.ids import (
    flag_id,
    full_url,
    provenance_id,
    reference_for,
    task_id,
)

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
CHILD = "nhs:9912003888"


def test_ids_are_deterministic_and_valid_fhir_ids() -> None:
    ids = [flag_id(CHILD, "engagement"), task_id(CHILD, "Appointment/a1", "review-impact"),
           provenance_id(CHILD, "Appointment/a1", "not-brought", "single-wnb/none")]
    again = [flag_id(CHILD, "engagement"), task_id(CHILD, "Appointment/a1", "review-impact"),
             provenance_id(CHILD, "Appointment/a1", "not-brought", "single-wnb/none")]
    assert ids == again
    for rid in ids:
        assert FHIR_ID.fullmatch(rid), rid
    assert [i.split("-")[1] for i in ids] == ["flag", "task", "prov"]


def test_no_patient_identifier_appears_in_an_output_id() -> None:
    """Ids are hashes: no NHS number or local patient id leaks into an identifier."""
    for rid in (flag_id(CHILD, "engagement"), task_id(CHILD, "Appointment/a1", "inform-gp")):
        assert "9912003888" not in rid
        assert re.fullmatch(r"fe-(flag|task)-[0-9a-f]{32}", rid)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (flag_id("nhs:9912003888", "engagement"), flag_id("nhs:9434765919", "engagement")),
        (flag_id(CHILD, "engagement"), flag_id(CHILD, "over-engagement")),
        (task_id(CHILD, "Appointment/a1", "inform-gp"), task_id(CHILD, "Appointment/a2",
                                                                "inform-gp")),
        (task_id(CHILD, "Appointment/a1", "inform-gp"), task_id(CHILD, "Appointment/a1",
                                                                "review-impact")),
        (task_id(CHILD, "Appointment/a1", "review-impact"),
         task_id(CHILD, "Appointment/a1", "review-impact", "retracted")),
        (provenance_id(CHILD, "Appointment/a1", "not-brought", "single-wnb/none"),
         provenance_id(CHILD, "Appointment/a1", "not-brought", "retracted/any")),
    ],
    ids=["other child", "one Flag of each kind", "other event", "other action",
         "a retraction asks again", "one Provenance per decision"],
)
def test_different_inputs_give_different_ids(a: str, b: str) -> None:
    assert a != b


def test_one_task_per_action_per_event_whatever_the_stage() -> None:
    """The same event re-decided at another stage must not raise the same Task twice."""
    assert task_id(CHILD, "Appointment/a1", "review-impact", "single-wnb") == task_id(
        CHILD, "Appointment/a1", "review-impact", "repeat-wnb")


def test_full_url_is_a_stable_urn_uuid() -> None:
    url = full_url("fe-flag-abc")
    assert url == full_url("fe-flag-abc")
    assert url != full_url("fe-flag-abd")
    assert url.startswith("urn:uuid:")
    assert uuid.UUID(url.removeprefix("urn:uuid:")).version == 5


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("nhs:9912003888", {"reference": "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number"
                                         "|9912003888", "type": "Patient"}),
        ("id:urn:trust:mrn|77", {"identifier": {"system": "urn:trust:mrn", "value": "77"},
                                 "type": "Patient"}),
        ("Patient/p1", {"reference": "Patient/p1"}),
    ],
)
def test_reference_for(key: str, expected: dict[str, object]) -> None:
    assert reference_for(key) == expected
