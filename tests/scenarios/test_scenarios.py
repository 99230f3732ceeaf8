"""Golden scenarios: every row of the rules table, replayed from fixtures/scenarios/.

Each folder's expected.toml was written by hand from shared/guidance/rules.md (the cell it checks
is named in its comments) and the England bank-holiday calendar, not copied from a run.
"""

from __future__ import annotations

import random
import shutil
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from fhir_engagement.config import Settings
from fhir_engagement.ingest.references import resource_path
from fhir_engagement.pipeline import Engine, load_engine
from fhir_engagement.replay import replay
from fhir_engagement.store import SqliteStore
from tests.conftest import SCENARIOS, scenario_engine, without_decision_times

LONDON = ZoneInfo("Europe/London")
CASES = sorted(p.name for p in SCENARIOS.iterdir() if (p / "expected.toml").exists())


def _expected(case: str) -> dict[str, Any]:
    return tomllib.loads((SCENARIOS / case / "expected.toml").read_text())


def _tasks(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"]


def _task_key(task: dict[str, Any]) -> tuple[str, str, str, str, bool]:
    due = datetime.fromisoformat(task["restriction"]["period"]["end"]).astimezone(LONDON)
    retracted = "retracted" in task["description"]
    # A scenario's events come from its server (fullUrl https://fixture.example/fhir): the focus
    # is that server's absolute URL, compared here by Type/id; a v2 event's, by its id.
    focus = task["focus"].get("reference") or task["focus"]["identifier"]["value"]
    focus = resource_path(focus) if "/" in focus else focus
    return (focus, task["code"]["coding"][0]["code"], task["priority"], due.date().isoformat(),
            retracted)


def _flags(bundle: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for entry in bundle["entry"]:
        flag = entry["resource"]
        if flag["resourceType"] == "Flag":
            priority = flag["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]
            out.add((flag["code"]["coding"][0]["code"], priority,
                     flag["category"][0]["coding"][0]["code"]))
    return out


def _run(paths: list[Path], engine: Engine, store: SqliteStore) -> dict[str, Any]:
    result = replay(paths, engine, store)
    assert result.rejected == [], [str(e) for e in result.rejected]
    return result.bundle


@pytest.mark.parametrize("case", CASES)
def test_scenario_gives_the_expected_tasks_and_flag(
    case: str, engine: Engine, store: SqliteStore
) -> None:
    expected = _expected(case)
    bundle = _run([SCENARIOS / case], scenario_engine(case, engine), store)
    want = sorted((t["focus"], t["code"], t["priority"], t["due"], t.get("retracted", False))
                  for t in expected.get("task", []))
    assert sorted(_task_key(t) for t in _tasks(bundle)) == want
    assert _flags(bundle) == {(f["code"], f["priority"], f["category"])
                              for f in expected.get("flag", [])}


@pytest.mark.parametrize("case", [c for c in CASES if any("owner" in t for t in
                                                          _expected(c).get("task", []))])
def test_the_practitioner_who_expected_the_child_owns_review_impact(
    case: str, engine: Engine, store: SqliteStore
) -> None:
    bundle = _run([SCENARIOS / case], scenario_engine(case, engine), store)
    owners = {(_task_key(t)[0], t["code"]["coding"][0]["code"]):
              resource_path(t.get("owner", {}).get("reference", "")) for t in _tasks(bundle)}
    for task in _expected(case)["task"]:
        if "owner" in task:
            assert owners[(task["focus"], task["code"])] == task["owner"]


@pytest.mark.parametrize("case", [c for c in CASES if any(
    "description" in t or "question" in t for t in _expected(c).get("task", []))])
def test_task_wording_follows_the_source_care_setting(
    case: str, engine: Engine, store: SqliteStore
) -> None:
    """rules.md s.8: a source's care (primary or secondary) changes the words a Task uses. The
    expected words are in the scenario's expected.toml, from the rules.md line each follows."""
    bundle = _run([SCENARIOS / case], scenario_engine(case, engine), store)
    tasks = {(_task_key(t)[0], t["code"]["coding"][0]["code"]): t for t in _tasks(bundle)}
    for want in _expected(case)["task"]:
        task = tasks[(want["focus"], want["code"])]
        assert want.get("description", "") in task["description"], task["description"]
        assert want.get("question", "") in task["note"][0]["text"], task["note"][0]["text"]


def test_without_a_configured_source_the_generic_words_stand(
    engine: Engine, store: SqliteStore
) -> None:
    """The same GP-practice input replayed with no sources configured: its server is a source of
    its own with no care setting, so the Task keeps the action CodeSystem's definition."""
    bundle = _run([SCENARIOS / "35-primary-care-gp-practice"], engine, store)
    (inform,) = [t for t in _tasks(bundle) if t["code"]["coding"][0]["code"] == "inform-gp"]
    assert inform["description"].startswith("Tell the child's GP and the practice safeguarding "
                                            "lead. Raised by:")


def test_practice_example_ends_in_a_neglect_referral(engine: Engine, store: SqliteStore) -> None:
    bundle = _run([SCENARIOS / "08-practice-example-looked-after-camhs"], engine, store)
    tasks = _tasks(bundle)
    last_event = max(_task_key(t)[0] for t in tasks)
    assert "neglect-referral" in {t["code"]["coding"][0]["code"] for t in tasks
                                  if _task_key(t)[0] == last_event}


def test_barrier_and_age_notes(engine: Engine, store: SqliteStore) -> None:
    notes = " ".join(n["text"] for case in ("10-intermittent-family-cancellations", "19-unknown-age")
                     for t in _tasks(_run([SCENARIOS / case], engine, store)) for n in t["note"])
    assert "no transport" in notes.lower()
    assert "age is unknown" in notes


def test_every_task_asks_the_impact_question_and_says_why(engine: Engine, store: SqliteStore) -> None:
    for task in _tasks(_run([SCENARIOS], engine, store)):
        texts = [n["text"] for n in task["note"]]
        assert texts[0].startswith(("What impact", "Does this pattern", "Is the same pattern"))
        assert texts[1].startswith("Why: Rule ")
        assert "rules 2026.11-default" in texts[1]


def test_over_engagement_never_writes_to_the_parents(engine: Engine, store: SqliteStore) -> None:
    bundle = _run([SCENARIOS / "15-over-engagement"], engine, store)
    codes = {t["code"]["coding"][0]["code"] for t in _tasks(bundle)}
    assert "send-wnb-letter" not in codes
    assert codes == {"named-doctor-review"}


def test_whole_fixture_folder_is_the_union_of_its_scenarios(
    engine: Engine, store: SqliteStore
) -> None:
    region = SCENARIOS.parent / "region"
    with_region = load_engine(Settings.load(region / "settings.toml"))
    bundle = _run([SCENARIOS.parent], with_region, store)
    want = sum(len(_expected(c).get("task", [])) for c in CASES) + len(
        tomllib.loads((region / "expected.toml").read_text())["task"])
    assert len(_tasks(bundle)) == want
    situations = {t["note"][1]["text"].split()[2].split("/")[0] for t in _tasks(bundle)}
    assert situations == {"single-wnb", "repeat-wnb", "persistent-wnb", "intermittent",
                          "refused-assessment", "left-against-advice", "left-before-seen",
                          "over-engagement", "retracted", "discharged-after-wnb", "household"}


def test_replaying_twice_writes_nothing_new(engine: Engine, store: SqliteStore) -> None:
    first = _run([SCENARIOS], engine, store)
    second = _run([SCENARIOS], engine, store)
    assert len(_tasks(first)) > 0
    assert second["entry"] == []


def test_file_order_does_not_change_the_outputs(
    engine: Engine, tmp_path: Path, store: SqliteStore
) -> None:
    """Events are processed in event-time order, whatever order the files come in."""
    shuffled = tmp_path / "shuffled"
    files = sorted(p for p in SCENARIOS.rglob("*") if p.suffix in (".json", ".ndjson", ".hl7"))
    names = [f"{i:03d}" for i in range(len(files))]
    random.Random(7).shuffle(names)
    for name, path in zip(names, files, strict=True):
        shuffled.mkdir(exist_ok=True)
        shutil.copy(path, shuffled / f"{name}-{path.name}")
    other = SqliteStore(str(tmp_path / "other.sqlite3"))
    try:
        a = _run([SCENARIOS], engine, store)
        b = _run([shuffled], engine, other)
    finally:
        other.close()
    assert sorted(map(_task_key, _tasks(a))) == sorted(map(_task_key, _tasks(b)))
    assert _flags(a) == _flags(b)


@pytest.mark.parametrize("cancellation_first", [False, True], ids=["in order", "reversed"])
def test_a_cancelled_fhir_discharge_is_retracted_whatever_the_file_order(
    engine: Engine, tmp_path: Path, store: SqliteStore, cancellation_first: bool
) -> None:
    """rules.md s.7 "Order": a correction is applied after the version it corrects, whatever
    time it carries. The cancelled discharge has no period.end, so its own time (period.start)
    is earlier than the discharge's; the FHIR twin of ADT^A13 (tests/hl7v2, A03 then A13).
    Expected from rules.md s.5 (see the scenario's expected.toml): the left-against-advice cell
    for no known status, then one review-impact Task saying the triggering event was retracted."""
    case = SCENARIOS / "25-discharge-cancelled"
    files = sorted(case.glob("*.json"), reverse=cancellation_first)
    folder = tmp_path / "feed"
    folder.mkdir()
    for i, path in enumerate(files):
        shutil.copy(path, folder / f"{i}.json")
    result = replay([folder], engine, store)
    assert result.rejected == []
    assert result.stats["retracted left-against-advice"] == 1
    want = sorted((t["focus"], t["code"], t["priority"], t["due"], t.get("retracted", False))
                  for t in _expected(case.name)["task"])
    assert sorted(_task_key(t) for t in _tasks(result.bundle)) == want
    assert _flags(result.bundle) == {("left-against-advice", "PM", "safety")}


def test_outputs_are_deterministic_byte_for_byte(engine: Engine, tmp_path: Path) -> None:
    """Two replays agree on everything but the decision times (and meta), which differ."""
    bundles = []
    for name in ("a", "b"):
        s = SqliteStore(str(tmp_path / f"{name}.sqlite3"))
        try:
            bundles.append(_run([SCENARIOS], engine, s))
        finally:
            s.close()
        time.sleep(0.002)  # a later clock for the second run
    stable = [[(e["fullUrl"], orjson.dumps(without_decision_times(e["resource"])))
               for e in b["entry"]] for b in bundles]
    assert stable[0] == stable[1]
    recorded = [{e["resource"].get("recorded") for e in b["entry"]} - {None} for b in bundles]
    assert recorded[0].isdisjoint(recorded[1])  # the clock did reach them: it is not the event


def test_each_write_says_when_the_event_was_and_when_it_was_decided(
    engine: Engine, store: SqliteStore
) -> None:
    """Provenance.occurredDateTime is the event's time; recorded and Task.authoredOn, now."""
    before = datetime.now(UTC)
    bundle = _run([SCENARIOS / "05-repeat-wnb-no-status"], engine, store)
    after = datetime.now(UTC)
    resources = [e["resource"] for e in bundle["entry"]]
    provs = [r for r in resources if r["resourceType"] == "Provenance"]
    assert provs
    for prov in provs:
        assert before <= datetime.fromisoformat(prov["recorded"]) <= after
        assert datetime.fromisoformat(prov["occurredDateTime"]) < before  # 2026 fixture events
    for task in _tasks(bundle):
        assert before <= datetime.fromisoformat(task["authoredOn"]) <= after


def test_every_write_carries_provenance(engine: Engine, store: SqliteStore) -> None:
    """rules.md section 5: every Flag and Task written is the target of a Provenance that names
    the rule and the rules version."""
    bundle = _run([SCENARIOS], engine, store)
    written = {e["fullUrl"] for e in bundle["entry"]
               if e["resource"]["resourceType"] in ("Flag", "Task")}
    provenances = [e["resource"] for e in bundle["entry"]
                   if e["resource"]["resourceType"] == "Provenance"]
    targets = {t["reference"] for p in provenances for t in p["target"]}
    assert written <= targets
    assert all(p["policy"][0].startswith("https://fhir-engagement.org/fhir/rules/2026.11-default#")
               for p in provenances)
