"""Loading rules.toml and calendar.toml: the table is complete, a cell that writes to parents is
refused, and the calendar's nation and closures are checked."""

from __future__ import annotations

import re
import shutil
from datetime import date
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


# -- calendar.toml ------------------------------------------------------------------------------
def _calendar_with(tmp_path: Path, old: str, new: str) -> tuple[Path, Path]:
    root = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, root)
    path = root / "calendar.toml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"test setup: {old!r} must occur once"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return root, path


def _line(path: Path, start: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.startswith(start))


def test_a_bad_nation_is_refused_naming_file_key_and_line(tmp_path: Path) -> None:
    root, path = _calendar_with(tmp_path, 'nation = "england-and-wales"', 'nation = "wales"')
    with pytest.raises(RulesError, match="'england-and-wales', 'scotland' or 'northern-ireland'") \
            as caught:
        load_rules(root)
    assert caught.value.file == str(path)
    assert caught.value.where == f"nation (line {_line(path, 'nation =')})"


def test_the_nation_chooses_the_bank_holidays(tmp_path: Path) -> None:
    root, _ = _calendar_with(tmp_path, 'nation = "england-and-wales"', 'nation = "scotland"')
    scotland = load_rules(root).holidays
    assert scotland.nation == "scotland"
    assert date(2026, 1, 2) in scotland  # the Scottish New Year holiday
    assert date(2026, 4, 6) not in scotland  # Easter Monday is not a bank holiday there


def test_local_closures_are_days_off(tmp_path: Path) -> None:
    root, _ = _calendar_with(tmp_path, "closures = []", 'closures = ["2026-12-24", "2026-12-31"]')
    holidays = load_rules(root).holidays
    assert {date(2026, 12, 24), date(2026, 12, 31)} <= holidays.closed
    assert date(2026, 12, 25) in holidays  # the bank holidays are still there


def test_a_closure_outside_the_known_years_is_refused(tmp_path: Path) -> None:
    root, path = _calendar_with(tmp_path, "closures = []", 'closures = ["2026-12-24", "2101-01-03"]')
    with pytest.raises(RulesError, match=r"closure 2101-01-03 is outside the working-day calendar "
                                         r"\(1872-2100\)") as caught:
        load_rules(root)
    assert caught.value.file == str(path)
    assert caught.value.where.startswith("closures[1] (line ")


def test_the_old_hand_kept_holiday_list_is_refused_with_a_pointer(tmp_path: Path) -> None:
    root, path = _calendar_with(tmp_path, "closures = []", 'holidays = ["2026-12-25"]')
    with pytest.raises(RulesError, match=r"holidays package for `nation`.*under `closures`") as caught:
        load_rules(root)
    assert caught.value.where == f"holidays (line {_line(path, 'holidays =')})"
