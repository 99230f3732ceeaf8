"""The WNB letter drafts the scenarios produce (rules.md s.8, "The letter").

What each letter must say is in its scenario's expected.toml (``[[letter]]``), worked out by hand
from the scenario's input; readability is measured with textstat's Flesch reading ease on every
letter any scenario writes.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import textstat

from fhir_engagement.ingest.references import resource_path
from fhir_engagement.pipeline import Engine
from fhir_engagement.replay import replay
from fhir_engagement.store import SqliteStore
from tests.conftest import SCENARIOS, scenario_engine

LETTER_CASES = sorted(p.name for p in SCENARIOS.iterdir() if (p / "expected.toml").exists()
                      and "letter" in tomllib.loads((p / "expected.toml").read_text()))


def _bundle(paths: list[Path], engine: Engine, store: SqliteStore) -> dict[str, Any]:
    result = replay(paths, engine, store)
    assert result.rejected == [], [str(e) for e in result.rejected]
    return result.bundle


def _of(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def _by_url(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


def _letters(bundle: dict[str, Any], copy: str) -> list[dict[str, Any]]:
    wanted = "Was not brought letter" if copy == "parent" else "Was not brought letter: GP copy"
    return [c for c in _of(bundle, "CommunicationRequest") if c["category"][0]["text"] == wanted]


def _text(draft: dict[str, Any]) -> str:
    return str(draft["payload"][0]["contentString"])


def _focus(draft: dict[str, Any]) -> str:
    return resource_path(draft["about"][0]["reference"])


@pytest.mark.parametrize("case", LETTER_CASES)
def test_each_letter_says_what_the_scenario_worked_out(
    case: str, engine: Engine, store: SqliteStore
) -> None:
    bundle = _bundle([SCENARIOS / case], scenario_engine(case, engine), store)
    parents = {_focus(d): d for d in _letters(bundle, "parent")}
    gps = {_focus(d): d for d in _letters(bundle, "gp")}
    expected = tomllib.loads((SCENARIOS / case / "expected.toml").read_text())["letter"]
    assert sorted(parents) == sorted(e["focus"] for e in expected)
    for want in expected:
        parent, gp = parents[want["focus"]], gps[want["focus"]]
        recipient = parent["recipient"][0]
        assert recipient["display"] == want["recipient"]
        assert recipient.get("reference") == want.get("recipient_reference")
        for line in want["says"]:
            assert line in _text(parent), line
            assert line in _text(gp), line  # the GP's copy carries the parent's letter
        for name in want["never"]:
            assert name not in _text(parent), name
            assert name not in _text(gp), name
        for line in want.get("gp_says", []):  # the copy's own words (rules.md s.8, its care)
            assert line in _text(gp), line
        assert gp["recipient"][0]["display"] == want["gp"]
        assert gp["recipient"][0].get("identifier", {}).get("value") == want.get("gp_identifier")


def test_a_letter_names_no_other_child_of_the_store(engine: Engine, store: SqliteStore) -> None:
    """Two children in one store: each letter and its GP copy name their own child only."""
    bundle = _bundle([SCENARIOS / "40-wnb-letter-two-children"], engine, store)
    patients = _patients()
    drafts = _of(bundle, "CommunicationRequest")
    assert len(drafts) == 4
    for draft in drafts:
        own = "Amira" if "Amira" in _text(draft) else "Oliver"
        other = next(p for p in patients.values() if p["name"][0]["given"][0] != own)
        for word in (*other["name"][0]["given"], other["name"][0]["family"]):
            assert word not in _text(draft)
            assert word not in str(draft["recipient"])


def _patients() -> dict[str, dict[str, Any]]:
    """The input's Patients (the Bundle holds outputs only)."""
    doc = json.loads((SCENARIOS / "40-wnb-letter-two-children" / "bundle.json").read_text())
    return {e["resource"]["id"]: e["resource"] for e in doc["entry"]
            if e["resource"]["resourceType"] == "Patient"}


def test_every_letter_of_every_scenario_is_plain_english(engine: Engine, store: SqliteStore) -> None:
    """Flesch reading ease >= 60 ("plain English"), on each rendered letter to a family."""
    bundle = _bundle([SCENARIOS], engine, store)
    letters = _letters(bundle, "parent")
    assert len(letters) >= 5  # several scenarios: repeat, consecutive, persistent, infant, two children
    scores = {_focus(d): textstat.flesch_reading_ease(_text(d)) for d in letters}
    assert min(scores.values()) >= 60, scores


def test_each_draft_goes_with_its_task(engine: Engine, store: SqliteStore) -> None:
    """basedOn the send-wnb-letter Task of the same Bundle, about its event, for its child, and
    named by the decision's Provenance like every other write."""
    bundle = _bundle([SCENARIOS], engine, store)
    urls = _by_url(bundle)
    targets = {t["reference"] for p in _of(bundle, "Provenance") for t in p["target"]}
    letter_tasks = [t for t in _of(bundle, "Task") if t["code"]["coding"][0]["code"] ==
                    "send-wnb-letter"]
    drafts = _of(bundle, "CommunicationRequest")
    assert len(drafts) == 2 * len(letter_tasks)
    for entry in bundle["entry"]:
        draft = entry["resource"]
        if draft["resourceType"] != "CommunicationRequest":
            continue
        task = urls[draft["basedOn"][0]["reference"]]
        assert task["code"]["coding"][0]["code"] == "send-wnb-letter"
        assert draft["status"] == "draft"
        assert draft["subject"] == task["for"]
        assert draft["about"][0] == task["focus"]
        assert entry["fullUrl"] in targets
        assert entry["request"] == {"method": "POST", "url": "CommunicationRequest",
                                    "ifNoneExist": "identifier=https://fhir-engagement.org/fhir/"
                                                   f"Id/communication-request|{draft['identifier'][0]['value']}"}


@pytest.mark.parametrize("case", ["15-over-engagement", "16-young-person-repeat"])
def test_no_letter_for_over_engagement_nor_a_young_person(
    case: str, engine: Engine, store: SqliteStore
) -> None:
    bundle = _bundle([SCENARIOS / case], engine, store)
    assert _of(bundle, "CommunicationRequest") == []
    assert not [t for t in _of(bundle, "Task") if t["code"]["coding"][0]["code"] == "send-wnb-letter"]
