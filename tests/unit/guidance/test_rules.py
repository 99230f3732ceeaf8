"""Loading rules.toml: the table is complete, and a cell that writes to parents is refused."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from fhir_engagement.errors import RulesError
from fhir_engagement.guidance.rules import COLUMNS, SITUATIONS, Rules, load_rules
from tests.conftest import MAPPINGS


def _copy_with(tmp_path: Path, old: str, new: str) -> tuple[Path, Path]:
    root = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, root)
    path = root / "rules.toml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"test setup: {old!r} must occur once"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return root, path


def test_every_situation_has_a_cell_for_every_column(rules: Rules) -> None:
    for situation in SITUATIONS:
        for column in COLUMNS:
            cell = rules.cell(situation, column)
            assert (cell.situation, cell.column) == (situation, column)
    assert rules.cell("retracted", "cpp-lac").column == "any"


def test_a_letter_in_an_over_engagement_cell_is_refused(tmp_path: Path) -> None:
    """rules.md 5: over-engagement never triggers a letter to the parents."""
    old = 'actions = [{ code = "named-doctor-review", priority = "urgent", due = "2wd" }]\n\n' \
          '# ----'
    new = ('actions = [{ code = "named-doctor-review", priority = "urgent", due = "2wd" },\n'
           '  { code = "send-wnb-letter", priority = "routine", due = "5wd" }]\n\n# ----')
    root, path = _copy_with(tmp_path, old, new)
    with pytest.raises(RulesError, match="never write to the parents") as caught:
        load_rules(root)
    assert caught.value.file == str(path)
    assert re.search(r"line \d+", str(caught.value))


def test_a_second_cell_for_the_same_row_and_column_is_named(tmp_path: Path) -> None:
    root, path = _copy_with(tmp_path, 'id = "intermittent/cin"\nsituation = "intermittent"\n'
                            'column = "cin"', 'id = "intermittent/cin"\n'
                            'situation = "intermittent"\ncolumn = "none"')
    with pytest.raises(RulesError, match=r"a second cell for \('intermittent', 'none'\)") as caught:
        load_rules(root)
    header = path.read_text(encoding="utf-8").splitlines().index('id = "intermittent/cin"')
    assert "rule[13]" in str(caught.value)
    assert f"line {header}" in str(caught.value)  # the [[rule]] line just above the id


def test_a_missing_cell_is_named(tmp_path: Path) -> None:
    cell = ('[[rule]]\nid = "intermittent/cin"\nsituation = "intermittent"\ncolumn = "cin"\n'
            'flag = { code = "disengagement-intermittent", priority = "PL" }\nactions = [\n'
            '  { code = "curiosity-review", priority = "routine", due = "5wd" },\n'
            '  { code = "inform-social-worker", priority = "routine", due = "5wd" },\n]\n')
    root, _ = _copy_with(tmp_path, cell, "")
    with pytest.raises(RulesError, match="no cell for: intermittent/cin"):
        load_rules(root)


def test_an_unknown_action_code_is_refused(tmp_path: Path) -> None:
    root, _ = _copy_with(tmp_path, '{ code = "curiosity-review", priority = "urgent", due = "2wd" }',
                         '{ code = "curiosity-call", priority = "urgent", due = "2wd" }')
    with pytest.raises(RulesError, match="unknown action code 'curiosity-call'"):
        load_rules(root)
