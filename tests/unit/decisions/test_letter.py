"""The WNB letter drafts (decisions/letter.py) and the trust's templates (lettertemplates.py)."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import textstat
from fhir.resources.R4B.communicationrequest import CommunicationRequest

from fhir_engagement.decisions.letter import LetterRefusedError, letter_drafts, merge_facts
from fhir_engagement.decisions.lettertemplates import LetterTemplates, load_letter_templates
from fhir_engagement.errors import LetterTemplateError
from fhir_engagement.guidance.decide import Situation, decide
from fhir_engagement.guidance.rules import Rules
from fhir_engagement.model import ChildStatus, Contact, Decision, Event, HistoryItem, LetterFacts
from fhir_engagement.reports.audit import Read
from fhir_engagement.reports.letters import Letter, letter_html
from fhir_engagement.store.base import Access
from tests.conftest import MAPPINGS

LONDON = ZoneInfo("Europe/London")
AT = datetime(2026, 7, 7, 8, 45, tzinfo=UTC)  # 09:45 BST
SUBJECT = {"reference": "Patient/p1"}
MOTHER = Contact("Jo Bloggs", "mother",
                 frozenset({"http://terminology.hl7.org/CodeSystem/v3-RoleCode|MTH"}))


def _event(service: str = "Community dental") -> Event:
    raw = (orjson.dumps({"resourceType": "Appointment", "serviceType": [{"text": service}]})
           if service else None)
    return Event(key="Appointment/a1", resource_type="Appointment", occurred=AT,
                 patient="Patient/p1", subject=SUBJECT, slots={}, origin="test", raw=raw)


@pytest.fixture(scope="module")
def letters() -> LetterTemplates:
    return load_letter_templates(MAPPINGS / "letters")


@pytest.fixture
def repeat(rules: Rules) -> Decision:
    history = [HistoryItem("Appointment/a0", "not-brought", AT - timedelta(days=30))]
    decision = decide(Situation(_event(), "not-brought", history, ChildStatus(), "child"), rules)
    assert decision is not None
    assert any(a.code == "send-wnb-letter" for a in decision.actions)
    return decision


def _drafts(decision: Decision, letters: LetterTemplates, facts: LetterFacts, **kw: Any
            ) -> list[tuple[str, dict[str, Any]]]:
    return letter_drafts("fe-task-1", "urn:uuid:task", decision, kw.pop("event", _event()),
                         SUBJECT, facts, letters, LONDON, AT, **kw)


def _text(draft: dict[str, Any]) -> str:
    return str(draft["payload"][0]["contentString"])


def test_two_valid_drafts_based_on_the_task(repeat: Decision, letters: LetterTemplates) -> None:
    drafts = _drafts(repeat, letters, LetterFacts("Sam", (MOTHER,), (("pl", ""),)))
    assert len(drafts) == 2
    for _, draft in drafts:
        CommunicationRequest.model_validate(draft)
        assert draft["status"] == "draft"
        assert draft["basedOn"] == [{"reference": "urn:uuid:task"}]
        assert draft["subject"] == SUBJECT
    parent = _text(drafts[0][1])
    assert "Dear Jo Bloggs," in parent
    assert "Sam was not brought to the Community dental appointment on Tuesday 7 July 2026 at " \
           "09:45." in parent  # 08:45 UTC is 09:45 in London in July
    assert "an interpreter who speaks Polish" in parent
    assert "What happens when a child is not brought to their appointment?" in parent
    assert drafts[0][1]["recipient"] == [{"type": "RelatedPerson", "display": "Jo Bloggs (mother)"}]
    assert drafts[1][1]["recipient"] == [{"display": "The child's GP"}]
    assert parent.partition("\n\n")[2] in _text(drafts[1][1])  # the copy carries the letter


def test_with_no_parent_known_the_letter_goes_to_the_child_address(
    repeat: Decision, letters: LetterTemplates
) -> None:
    neighbour = Contact("Pat Green", "Emergency Contact",
                        frozenset({"http://terminology.hl7.org/CodeSystem/v2-0131|C"}))
    draft = _drafts(repeat, letters, LetterFacts("", (neighbour,)))[0][1]
    assert draft["recipient"] == [SUBJECT]
    assert "Dear parent or carer," in _text(draft)
    assert "your child was not brought" in _text(draft)
    assert "Pat Green" not in _text(draft)


@pytest.mark.parametrize(("facts", "service", "phone"), [
    (LetterFacts("Sam", (MOTHER,), (("pl", ""),)), "Community dental", "023 8000 0000"),
    (LetterFacts("Mohammed-Ali"), "", ""),
    (LetterFacts("Alexandra", (Contact("Christopher Montgomery-Smith", "father",
                                       frozenset()),)), "Paediatric gastroenterology", ""),
    (LetterFacts("Zo\u00eb", (), (("so", "Somali"),)), "Child and adolescent mental health",
     "0300 123 4567"),
])
def test_the_letter_is_plain_english(repeat: Decision, letters: LetterTemplates,
                                     facts: LetterFacts, service: str, phone: str) -> None:
    """Flesch reading ease >= 60 with long names, long services, a phone number or none."""
    english = letters.languages["en"]
    trust = {**english.trust, "phone": phone}
    tried = replace(letters, languages={"en": replace(english, trust=trust)})
    draft = _drafts(repeat, tried, facts, event=_event(service))[0][1]
    assert textstat.flesch_reading_ease(_text(draft)) >= 60, _text(draft)
    if phone:
        assert f"please call us on {phone}" in _text(draft)


def test_never_for_over_engagement(repeat: Decision, letters: LetterTemplates) -> None:
    with pytest.raises(LetterRefusedError, match="over-engagement"):
        _drafts(replace(repeat, situation="over-engagement"), letters, LetterFacts())


def test_never_to_the_parents_of_a_young_person_who_may_have_chosen(
    repeat: Decision, letters: LetterTemplates
) -> None:
    with pytest.raises(LetterRefusedError, match="16-17"):
        _drafts(repeat, letters, LetterFacts(), band="young-person")
    assert len(_drafts(repeat, letters, LetterFacts(), band="young-person",
                       reliant_on_adult=True)) == 2


def test_html_escapes_a_hostile_name(repeat: Decision, letters: LetterTemplates) -> None:
    facts = LetterFacts("<script>alert(1)</script>",
                        (Contact('"><img src=x onerror=alert(2)>', "mother"),))
    draft = _drafts(repeat, letters, facts)[0][1]
    assert "<script>alert(1)</script> was not brought" in _text(draft)  # plain text, as given
    title, _, body = _text(draft).partition("\n\n")
    access = Access(AT, "tester", "letter", "hash")
    html = letter_html(Letter(title, body, "en", Read(access, {})), letters)
    assert "<script>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; was not brought" in html


def test_merge_keeps_the_first_name_and_every_contact_once() -> None:
    a = LetterFacts("", (MOTHER,), (("pl", ""),))
    b = LetterFacts("Sam", (MOTHER, Contact("Tom", "father", reference="RelatedPerson/f")))
    merged = merge_facts([a, b])
    assert merged.given_name == "Sam"
    assert [c.name for c in merged.contacts] == ["Jo Bloggs", "Tom"]
    assert merged.languages == (("pl", ""),)


def test_a_family_language_with_a_template_gets_its_letter(tmp_path: Path) -> None:
    """A trust's own translation is picked by the family's language (here a copy named cy)."""
    shutil.copytree(MAPPINGS / "letters", tmp_path / "letters")
    text = (tmp_path / "letters" / "en.toml").read_text().replace('language = "en"',
                                                                    'language = "cy"')
    (tmp_path / "letters" / "cy.toml").write_text(text)
    letters = load_letter_templates(tmp_path / "letters")
    assert letters.pick(("cy-GB",)).language == "cy"
    assert letters.pick(("pl",)).language == "en"


@pytest.mark.parametrize(("change", "message"), [
    (("{{ child }} was not brought", "{{ child_name }} was not brought"), "parent.subject"),
    (("{% if service %}", "{% if service %"), "parent.body"),
    (('language = "en"', 'language = "fr"'), "file name is the language code"),
])
def test_a_broken_template_stops_the_start(tmp_path: Path, change: tuple[str, str],
                                           message: str) -> None:
    shutil.copytree(MAPPINGS / "letters", tmp_path / "letters")
    path = tmp_path / "letters" / "en.toml"
    path.write_text(path.read_text().replace(*change, 1))
    with pytest.raises(LetterTemplateError, match=re.escape(message)) as err:
        load_letter_templates(tmp_path / "letters")
    assert str(path) in str(err.value)


def test_no_english_letter_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "letters").mkdir()
    shutil.copy(MAPPINGS / "letters" / "page.html", tmp_path / "letters")
    with pytest.raises(LetterTemplateError, match=r"no en\.toml"):
        load_letter_templates(tmp_path / "letters")


def test_a_no_access_visit_says_no_one_was_in(repeat: Decision, letters: LetterTemplates) -> None:
    parent, gp = (d for _, d in _drafts(repeat, letters, LetterFacts("Sam"),
                                        signal="no-access-visit"))
    assert _text(parent).startswith("We could not see Sam at home\n")
    assert "We came to see Sam at home on Tuesday 7 July 2026 at 09:45, but no one was in." \
        in _text(parent)
    assert "was not brought to" not in _text(parent)
    assert textstat.flesch_reading_ease(_text(parent)) >= 60
    assert _text(gp).startswith("Copy for the GP: we could not see Sam at home\n")


def test_the_gp_is_told_the_rule_s_own_reason(repeat: Decision, letters: LetterTemplates) -> None:
    gp = _drafts(repeat, letters, LetterFacts("Sam"))[1][1]
    assert "We wrote because of this pattern of missed care: 2nd not-brought in 365 days." \
        in _text(gp)


@pytest.mark.parametrize("care", ["primary", "secondary", ""])
def test_the_gp_sentence_follows_the_care_setting(
    repeat: Decision, letters: LetterTemplates, care: str
) -> None:
    """rules.md s.8: wording follows the source's setting. A GP practice's letter (primary care)
    keeps its copy in the child's record and does not say it will tell the child's GP; a
    hospital's (secondary) and an unconfigured source's say the GP gets a copy."""
    parent, gp = (_text(d) for _, d in _drafts(repeat, letters, LetterFacts("Sam", (MOTHER,)),
                                                care=care))
    told = "We will send a copy of this letter to Sam's GP."
    kept = "We will keep a copy of this letter in Sam's records here at the practice."
    assert (kept if care == "primary" else told) in parent
    assert (told if care == "primary" else kept) not in parent
    assert gp.startswith("Copy for the child's record:" if care == "primary" else "Copy for the GP:")
    assert textstat.flesch_reading_ease(parent) >= 60, parent
    assert textstat.flesch_reading_ease(gp.split("---", 1)[0]) >= 60, gp


def test_a_template_broken_only_for_primary_care_stops_the_start(tmp_path: Path) -> None:
    """A branch only one setting takes is tried at start-up, not first met in a GP's letter."""
    shutil.copytree(MAPPINGS / "letters", tmp_path / "letters")
    path = tmp_path / "letters" / "en.toml"
    path.write_text(path.read_text().replace("in {{ child }}'s records here at the practice",
                                             "in {{ childs }}'s records here at the practice", 1))
    with pytest.raises(LetterTemplateError, match=r"parent\.body"):
        load_letter_templates(tmp_path / "letters")
