"""Primary and secondary care (rules.md s.8): a source's ``care`` names its own safeguarding lead.

The guidance has two versions; each source is configured as primary or secondary care and "owners
and wording follow it (practice safeguarding lead vs named nurse)". In mappings/rules.toml the
actions ``safeguarding-lead-review``, ``contact-childrens-services`` and ``household-review`` are
owned by the role ``safeguarding-lead`` ([owners]); ``[care.primary]`` turns that role into
``practice-safeguarding-lead`` and ``[care.secondary]`` into ``named-nurse``. owners.toml gives
neither a reference, so the Task carries the role's text in ``performerType``:

- primary:   "Practice safeguarding lead (primary care)"
- secondary: "Named nurse for safeguarding children (secondary care)"
- no configured source: the generic "Safeguarding lead (practice lead / named nurse)".

No single-miss rule in rules.toml has a safeguarding-lead owner, so each source here sends the
smallest input that reaches one: an infant (vulnerable, rules.md s.2) not brought twice in 12
months, which is "repeat WNB" x vulnerable (rules.md s.5 / rules.toml ``repeat-wnb/vulnerable``):
send-wnb-letter, inform-gp, inform-health-visitor (routine 5 wd), contact-childrens-services and
review-impact (urgent 2 wd). The second miss is Thu 2026-03-05, so urgent 2 wd is Mon 2026-03-09.
``review-impact`` is the expecting practitioner's whatever the care (the appointments name no
practitioner, so its fallback text): care changes only the safeguarding lead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from fhir_engagement.config import Settings
from fhir_engagement.ingest.references import NHS_NUMBER_SYSTEM
from fhir_engagement.pipeline import Engine, load_engine
from fhir_engagement.replay import ReplayResult, replay
from fhir_engagement.store import SqliteStore

GP_CHILD, TRUST_CHILD = "9990001073", "9434765919"  # valid modulus-11 NHS numbers
PRIMARY = "Practice safeguarding lead (primary care)"
SECONDARY = "Named nurse for safeguarding children (secondary care)"
GENERIC = "Safeguarding lead (practice lead / named nurse)"
EXPECTING = "Practitioner or service that expected to see the child"
# repeat-wnb/vulnerable's actions (rules.toml), worked from rules.md s.5's table
REPEAT_VULNERABLE = {"send-wnb-letter", "inform-gp", "inform-health-visitor",
                     "contact-childrens-services", "review-impact"}

SETTINGS = '''
[[sources]]
name = "gp-hill"
ods = "ZG001"
care = "primary"
folders = ["feeds/gp-hill"]

[[sources]]
name = "trust-a"
ods = "ZTA"
care = "secondary"
folders = ["feeds/trust-a"]
'''


def _write(folder: Path, name: str, doc: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(orjson.dumps(doc))


def _infant_missed_twice(folder: Path, nhs: str) -> None:
    """A baby born 2025-10-01 (5 months old at the second miss) not brought on two Thursdays."""
    _write(folder, "p.json", {"resourceType": "Patient", "id": "1", "birthDate": "2025-10-01",
                              "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs}]})
    for aid, start in (("1", "2026-02-05T10:00:00Z"), ("2", "2026-03-05T10:00:00Z")):
        _write(folder, f"a{aid}.json", {
            "resourceType": "Appointment", "id": aid, "status": "noshow", "start": start,
            "participant": [{"actor": {"reference": "Patient/1"}, "status": "accepted"}]})


def _replay(inputs: Path, engine: Engine, db: Path) -> ReplayResult:
    store = SqliteStore(str(db))
    try:
        return replay([inputs], engine, store)
    finally:
        store.close()


def _tasks_for(result: ReplayResult, nhs: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in result.bundle["entry"]
            if e["resource"]["resourceType"] == "Task"
            and nhs in orjson.dumps(e["resource"]["for"]).decode()]


def _on(task: dict[str, Any], focus_id: str) -> bool:
    """The Task is about Appointment/{focus_id}: a home reference, or described ("... at gp-hill")
    when a configured source's ids mean nothing on the target server."""
    display = str(task["focus"].get("reference") or task["focus"].get("display", ""))
    return f"{display} ".startswith(f"Appointment/{focus_id} ")


def _owner_text(tasks: list[dict[str, Any]], code: str, focus_id: str) -> tuple[str, ...]:
    return tuple(t["performerType"][0]["text"] for t in tasks
                 if t["code"]["coding"][0]["code"] == code
                 and _on(t, focus_id))


def test_primary_care_names_the_practice_lead_and_secondary_the_named_nurse(
    tmp_path: Path,
) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(SETTINGS)
    engine = load_engine(Settings.load(settings))
    inputs = tmp_path / "in"
    _infant_missed_twice(inputs / "feeds" / "gp-hill", GP_CHILD)
    _infant_missed_twice(inputs / "feeds" / "trust-a", TRUST_CHILD)
    result = _replay(inputs, engine, tmp_path / "care.sqlite3")
    assert result.rejected == []

    gp, trust = _tasks_for(result, GP_CHILD), _tasks_for(result, TRUST_CHILD)
    second = {t["code"]["coding"][0]["code"] for t in gp if _on(t, "2")}
    assert second == REPEAT_VULNERABLE
    assert _owner_text(gp, "contact-childrens-services", "2") == (PRIMARY,)
    assert _owner_text(trust, "contact-childrens-services", "2") == (SECONDARY,)
    (task,) = [t for t in trust if t["code"]["coding"][0]["code"] == "contact-childrens-services"]
    assert "owner" not in task  # owners.toml gives the named nurse no reference
    assert task["priority"] == "urgent"
    assert task["restriction"]["period"]["end"].startswith("2026-03-09")
    # The expecting practitioner's Task does not follow the care.
    assert _owner_text(gp, "review-impact", "2") == _owner_text(trust, "review-impact", "2") \
        == (EXPECTING,)


def test_without_a_configured_source_the_generic_safeguarding_lead_owns_it(
    engine: Engine, tmp_path: Path,
) -> None:
    inputs = tmp_path / "in"
    _infant_missed_twice(inputs, GP_CHILD)
    result = _replay(inputs, engine, tmp_path / "plain.sqlite3")
    # one child here, named by its home id (Patient/1), so every Task is hers
    tasks = [e["resource"] for e in result.bundle["entry"]
             if e["resource"]["resourceType"] == "Task"]
    assert _owner_text(tasks, "contact-childrens-services", "2") == (GENERIC,)
