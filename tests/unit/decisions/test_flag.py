"""The engagement Flag: escalated by later events, never lowered (rules.md section 4)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import orjson
import pytest
from fhir.resources.R4B.flag import Flag

from fhir_engagement.config import default_codesystems_dir
from fhir_engagement.decisions.codesystems import CodeSystems, load_codesystems
from fhir_engagement.decisions.flag import FlagState, flag_resource, merge_flag
from fhir_engagement.decisions.ids import FLAG_SYSTEM
from fhir_engagement.model import CONCERN_CODES, FlagChange

T1 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 2, 5, 9, 0, tzinfo=UTC)
T3 = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
LADDER = ("disengagement-single", "disengagement-repeat", "disengagement-persistent")
ENGAGEMENT = sorted(CONCERN_CODES - {"over-engagement"})


def change(code: str, priority: str) -> FlagChange:
    return FlagChange("engagement", code, priority, "safety")


def state(code: str, priority: str, start: datetime = T2,
          evidence: tuple[str, ...] = ("Appointment/a1",)) -> FlagState:
    return FlagState("engagement", code, priority, "safety", start, evidence)


def test_a_first_change_makes_the_flag() -> None:
    new = merge_flag(None, change("disengagement-repeat", "PM"), T2, ("Appointment/a1",))
    assert new == state("disengagement-repeat", "PM", T2, ("Appointment/a1",))


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        (("disengagement-single", "PL"), ("disengagement-repeat", "PM"),
         ("disengagement-repeat", "PM")),
        (("disengagement-repeat", "PM"), ("disengagement-single", "PL"),
         ("disengagement-repeat", "PM")),
        (("disengagement-persistent", "PM"), ("disengagement-repeat", "PH"),
         ("disengagement-persistent", "PH")),
        (("disengagement-repeat", "PH"), ("disengagement-persistent", "PM"),
         ("disengagement-persistent", "PH")),
        (("disengagement-single", "PH"), ("disengagement-single", "PL"),
         ("disengagement-single", "PH")),
    ],
    ids=["raised", "not lowered", "priority raised, stage kept", "stage raised, priority kept",
         "same stage, lower priority"],
)
def test_stage_and_priority_only_go_up(
    current: tuple[str, str], incoming: tuple[str, str], expected: tuple[str, str]
) -> None:
    """rules.md 4: a later, higher stage updates the Flag; the adapter never lowers it."""
    merged = merge_flag(state(*current), change(*incoming), T3, ("Appointment/a2",))
    assert (merged.code, merged.priority) == expected


@pytest.mark.parametrize(("a", "b"), list(itertools.permutations(ENGAGEMENT, 2)))
def test_the_order_of_events_does_not_change_the_stage_reached(a: str, b: str) -> None:
    """Never lowered: a then b reaches the same stage as b then a, and it sticks."""
    ab = merge_flag(state(a, "PL"), change(b, "PL"), T3, ())
    ba = merge_flag(state(b, "PL"), change(a, "PL"), T3, ())
    assert ab.code == ba.code
    assert ab.code in (a, b)
    assert merge_flag(ab, change(a, "PL"), T3, ()).code == ab.code
    assert merge_flag(ab, change(b, "PL"), T3, ()).code == ab.code


def test_the_ladder_single_repeat_persistent() -> None:
    flag = merge_flag(None, change(LADDER[0], "PL"), T1, ())
    for code in LADDER[1:]:
        flag = merge_flag(flag, change(code, "PL"), T2, ())
        assert flag.code == code
    assert merge_flag(flag, change(LADDER[0], "PL"), T3, ()).code == LADDER[-1]


@pytest.mark.parametrize(("at", "start"), [(T1, T1), (T3, T2)],
                         ids=["an earlier event moves the start back", "a later one does not"])
def test_period_start_is_the_first_triggering_event(at: datetime, start: datetime) -> None:
    """rules.md 4: period.start = first triggering event."""
    merged = merge_flag(state("disengagement-single", "PL", T2), change(LADDER[1], "PM"), at, ())
    assert merged.start == start


def test_evidence_accumulates_without_repeats() -> None:
    merged = merge_flag(state(LADDER[0], "PL", evidence=("Appointment/a1",)),
                        change(LADDER[1], "PL"), T3, ("Appointment/a1", "Appointment/a2"))
    assert merged.evidence == ("Appointment/a1", "Appointment/a2")


def test_the_same_change_again_changes_nothing() -> None:
    """A re-sent event must not rewrite the Flag."""
    once = merge_flag(None, change(LADDER[1], "PM"), T2, ("Appointment/a1",))
    assert merge_flag(once, change(LADDER[1], "PM"), T2, ("Appointment/a1",)) == once


@pytest.fixture(scope="module")
def systems() -> CodeSystems:
    return load_codesystems(default_codesystems_dir())


def test_flag_resource_is_valid_r4_with_the_contract_fields(systems: CodeSystems) -> None:
    """rules.md 4: status active, category safety, flag-priority and flag-detail extensions."""
    flag_state = state("disengagement-repeat", "PM", T1, ("Appointment/a1", "Encounter/e1"))
    resource = flag_resource("fe-flag-1", flag_state, {"reference": "Patient/p1"}, systems)
    Flag.model_validate(resource)
    assert resource["status"] == "active"
    assert resource["identifier"] == [{"system": FLAG_SYSTEM, "value": "fe-flag-1"}]
    assert resource["code"]["coding"][0] == {  # type: ignore[index]
        "system": "https://fhir-engagement.org/fhir/CodeSystem/engagement-concern",
        "code": "disengagement-repeat",
        "display": systems.display(
            "https://fhir-engagement.org/fhir/CodeSystem/engagement-concern",
            "disengagement-repeat")}
    assert resource["category"][0]["coding"][0]["code"] == "safety"  # type: ignore[index]
    assert resource["period"] == {"start": "2026-01-05T09:00:00+00:00"}
    extensions = resource["extension"]
    priority = [e for e in extensions  # type: ignore[attr-defined]
                if e["url"] == "http://hl7.org/fhir/StructureDefinition/flag-priority"]
    assert priority[0]["valueCodeableConcept"]["coding"][0]["code"] == "PM"
    details = [e["valueReference"]["reference"] for e in extensions  # type: ignore[attr-defined]
               if e["url"] == "http://hl7.org/fhir/StructureDefinition/flag-detail"]
    assert details == ["Appointment/a1", "Encounter/e1"]


def test_the_over_engagement_flag_is_clinical(systems: CodeSystems) -> None:
    over = FlagState("over-engagement", "over-engagement", "PM", "clinical", T1, ())
    resource = flag_resource("fe-flag-2", over, {"reference": "Patient/p1"}, systems)
    Flag.model_validate(resource)
    assert resource["category"][0]["coding"][0]["code"] == "clinical"  # type: ignore[index]


def _flag(code: str, priority: str, start: str, fid: str = "ours") -> dict[str, object]:
    return {"resourceType": "Flag", "id": fid, "status": "active",
            "code": {"coding": [{"system": "https://fhir-engagement.org/fhir/CodeSystem/"
                                           "engagement-concern", "code": code}]},
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/flag-priority",
                           "valueCodeableConcept": {"coding": [{"code": priority}]}}],
            "period": {"start": start}}


def test_never_lower_keeps_what_a_person_raised_on_the_server() -> None:
    from fhir_engagement.decisions.flag import never_lower

    ours = _flag("disengagement-single", "PM", "2026-02-01T10:00:00+00:00")
    theirs = _flag("disengagement-repeat", "PH", "2026-01-01T10:00:00+00:00", "server-1")
    merged = never_lower(ours, theirs)
    assert merged["id"] == "server-1"
    assert merged["code"]["coding"][0]["code"] == "disengagement-repeat"
    assert merged["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "PH"
    assert merged["period"] == {"start": "2026-01-01T10:00:00+00:00"}


def test_never_lower_still_escalates_past_the_server() -> None:
    from fhir_engagement.decisions.flag import never_lower

    ours = _flag("disengagement-persistent", "PM", "2026-02-01T10:00:00+00:00")
    theirs = _flag("disengagement-repeat", "PL", "2026-01-01T10:00:00+00:00", "server-1")
    merged = never_lower(ours, theirs)
    assert merged["code"]["coding"][0]["code"] == "disengagement-persistent"
    assert merged["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "PM"


@pytest.mark.parametrize(
    "flag_state_",
    [state("disengagement-repeat", "PM", T1, ("Appointment/a1", "Encounter/e1")),
     FlagState("over-engagement", "over-engagement", "PH", "clinical", T3, ())],
    ids=["engagement", "over-engagement"])
def test_flag_state_reads_back_what_flag_resource_wrote(
    systems: CodeSystems, flag_state_: FlagState
) -> None:
    """The pipeline escalates its stored Flag: reading it back must lose nothing."""
    from fhir_engagement.decisions.flag import flag_state

    resource = flag_resource("fe-flag-3", flag_state_, {"reference": "Patient/p1"}, systems)
    assert flag_state(orjson.loads(orjson.dumps(resource))) == flag_state_


def test_never_lower_ranks_a_code_it_does_not_know_lowest() -> None:
    """A person may have put a code of their own on the server's Flag: ours is not lowered by it."""
    from fhir_engagement.decisions.flag import never_lower

    ours = _flag("disengagement-single", "PL", "2026-02-01T10:00:00+00:00")
    theirs = _flag("something-local", "PX", "2026-03-01T10:00:00+00:00", "server-1")
    merged = never_lower(ours, theirs)
    assert merged["code"]["coding"][0]["code"] == "disengagement-single"
    assert merged["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "PL"
    assert merged["period"] == {"start": "2026-02-01T10:00:00+00:00"}


def test_the_priority_is_written_in_the_flag_priority_code_system(systems: CodeSystems) -> None:
    """codes.md: the flag-priority extension binds http://hl7.org/fhir/flag-priority-code."""
    resource = flag_resource("fe-flag-4", state("disengagement-single", "PL"),
                             {"reference": "Patient/p1"}, systems)
    coding = resource["extension"][0]["valueCodeableConcept"]["coding"]  # type: ignore[index]
    assert coding == [{"system": "http://hl7.org/fhir/flag-priority-code", "code": "PL",
                       "display": "Low priority"}]
    assert "terminology.hl7.org/CodeSystem/flag-priority" not in orjson.dumps(resource).decode()


OLD_PRIORITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-priority-code"


def test_flag_state_reads_a_flag_an_older_version_stored(systems: CodeSystems) -> None:
    """A Flag stored before issue 12 carries the old priority system: its priority still counts."""
    from fhir_engagement.decisions.flag import flag_state

    written = state("disengagement-repeat", "PH", T1)
    resource = orjson.loads(orjson.dumps(
        flag_resource("fe-flag-5", written, {"reference": "Patient/p1"}, systems)))
    resource["extension"][0]["valueCodeableConcept"]["coding"][0]["system"] = OLD_PRIORITY_SYSTEM
    assert flag_state(resource) == written


def test_a_priority_in_another_system_is_not_read(systems: CodeSystems) -> None:
    """Codings are compared on system and code: PH in some local system is not our PH."""
    from fhir_engagement.decisions.flag import flag_state

    resource = orjson.loads(orjson.dumps(flag_resource(
        "fe-flag-6", state("disengagement-repeat", "PH", T1), {"reference": "Patient/p1"},
        systems)))
    resource["extension"][0]["valueCodeableConcept"]["coding"][0]["system"] = "urn:local:prio"
    assert flag_state(resource).priority == "PL"


def test_never_lower_reads_the_old_system_and_writes_the_new() -> None:
    from fhir_engagement.decisions.flag import never_lower

    ours = _flag("disengagement-single", "PL", "2026-02-01T10:00:00+00:00")
    theirs = _flag("disengagement-single", "PH", "2026-01-01T10:00:00+00:00", "server-1")
    theirs["extension"][0]["valueCodeableConcept"]["coding"][0]["system"] = (  # type: ignore[index]
        OLD_PRIORITY_SYSTEM)
    merged = never_lower(ours, theirs)
    assert merged["extension"][0]["valueCodeableConcept"]["coding"] == [
        {"system": "http://hl7.org/fhir/flag-priority-code", "code": "PH",
         "display": "High priority"}]
