"""mappings/wording.toml: the Task words a source's care setting gives (rules.md s.8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_engagement.decisions.wording import TaskWording, load_wording
from fhir_engagement.errors import RulesError
from tests.conftest import MAPPINGS


def test_the_shipped_file_words_both_settings_and_leaves_the_rest_generic() -> None:
    wording = load_wording(MAPPINGS / "wording.toml")
    # rules.md s.4: safeguarding-lead-review is "the practice safeguarding lead (primary care) /
    # named nurse (secondary care)".
    assert wording.description("primary", "safeguarding-lead-review", "x") == \
        "Consult the practice safeguarding lead."
    assert wording.description("secondary", "safeguarding-lead-review", "x") == \
        "Consult the named nurse for safeguarding children."
    assert "GP record" in wording.description("primary", "inform-gp", "x")
    assert wording.description("", "inform-gp", "generic") == "generic"
    assert wording.description("primary", "neglect-referral", "generic") == "generic"
    assert wording.question("primary", "missed", "generic") == "generic"


@pytest.mark.parametrize(("text", "where"), [
    ('[primary.description]\ninform-gpp = "x"\n', "primary.description"),
    ('[secondary.question]\nretracted-twice = "x"\n', "secondary.question"),
    ('[tertiary.description]\ninform-gp = "x"\n', "tertiary"),
], ids=["unknown action", "unknown situation", "unknown setting"])
def test_a_bad_wording_file_names_the_file_and_the_key(
    tmp_path: Path, text: str, where: str
) -> None:
    path = tmp_path / "wording.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as err:
        load_wording(path)
    assert str(path) in str(err.value)
    assert where in str(err.value)


def test_no_file_is_the_generic_words(tmp_path: Path) -> None:
    assert load_wording(tmp_path / "wording.toml") == TaskWording()
