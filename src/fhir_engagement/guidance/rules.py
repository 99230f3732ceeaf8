"""The rules table's format (mappings/rules.toml, calendar.toml, owners.toml) and loading it.

Loaded once at start-up and checked for completeness: every situation has a cell for every column,
every code is one the output CodeSystems define, and over-engagement never writes to parents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fhir_engagement.config import load_model, locate
from fhir_engagement.errors import RulesError
from fhir_engagement.guidance.workdays import NATIONS, WorkingCalendar, uk_calendar
from fhir_engagement.model import ACTION_CODES, CONCERN_CODES

__all__ = [
    "COLUMNS",
    "SITUATIONS",
    "ActionSpec",
    "Cell",
    "FlagSpec",
    "Owner",
    "Patterns",
    "Rules",
    "load_rules",
]

SITUATIONS = (
    "single-wnb", "repeat-wnb", "persistent-wnb", "intermittent", "refused-assessment",
    "left-against-advice", "left-before-seen", "over-engagement",
    "discharged-after-wnb", "household",
)
COLUMNS = ("none", "cin", "cpp-lac", "vulnerable")
_DUE = re.compile(r"^(same-day|[0-9]{1,2}wd)$")
Condition = Literal["letter-asked", "infant", "not-infant", "happened-before"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionSpec(_Strict):
    code: str
    priority: Literal["routine", "urgent", "asap", "stat"]
    due: str
    when: Condition | None = None

    @field_validator("code")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in ACTION_CODES:
            raise ValueError(f"unknown action code '{value}'")
        return value

    @field_validator("due")
    @classmethod
    def _due_form(cls, value: str) -> str:
        if not _DUE.match(value):
            raise ValueError(f"due must be 'Nwd' or 'same-day', not '{value}'")
        return value

    @property
    def due_days(self) -> int | None:
        """Working days to add, or None for the same calendar day."""
        return None if self.due == "same-day" else int(self.due[:-2])


class FlagSpec(_Strict):
    code: str
    priority: Literal["PL", "PM", "PH"]
    when: Condition | None = None

    @field_validator("code")
    @classmethod
    def _known_concern(cls, value: str) -> str:
        if value not in CONCERN_CODES:
            raise ValueError(f"unknown concern code '{value}'")
        return value


class Cell(_Strict):
    id: str
    situation: Literal[*SITUATIONS, "retracted"]  # type: ignore[valid-type]
    column: Literal[*COLUMNS, "any"]  # type: ignore[valid-type]
    flag: FlagSpec | None = None
    note: str = ""
    actions: list[ActionSpec] = Field(min_length=1)


class Patterns(_Strict):
    not_brought_window_days: int = Field(gt=0)
    repeat_count: int = Field(ge=2)
    persistent_count: int = Field(ge=3)
    intermittent_window_days: int = Field(gt=0)
    intermittent_count: int = Field(ge=2)
    alternating_run: int = Field(ge=3)
    over_engagement_window_days: int = Field(gt=0)
    over_engagement_count: int = Field(ge=2)
    over_engagement_providers: int = Field(ge=2)
    left_before_seen_window_days: int = Field(gt=0)
    young_person_from: int = Field(gt=0)
    adult_from: int = Field(gt=0)


class YoungPerson(_Strict):
    situations: list[Literal[*SITUATIONS]]  # type: ignore[valid-type]
    remove: list[str] = []
    add: ActionSpec


class Decided(_Strict):
    """What a clinician's classify-attendance answer changes for a young person's later misses."""

    reliant_status: str = "reliant-on-adult"  # "was not brought": the child's ladder, with letters
    own_choice_status: str = "own-choice"  # "did not attend": only these actions, no letter
    own_choice_keep: list[str] = ["review-impact"]


class ClinicalRisk(_Strict):
    """A high-risk service or an urgent referral moves a miss to another column's timings."""

    situations: list[Literal[*SITUATIONS]]  # type: ignore[valid-type]
    column: Literal[*COLUMNS]  # type: ignore[valid-type]
    service_codes: str = Field(min_length=1)  # a code set in mappings/codes/
    priority_codes: str = Field(min_length=1)
    add: list[ActionSpec] = []


class Household(_Strict):
    """When brothers and sisters are asked about (rules.md s.8), and how fast."""

    situations: list[Literal[*SITUATIONS]]  # type: ignore[valid-type]
    any_pattern_columns: list[Literal[*COLUMNS]]  # type: ignore[valid-type]
    any_pattern_situations: list[Literal[*SITUATIONS]]  # type: ignore[valid-type]
    group_codes: str = Field(min_length=1)  # a code set: Group.code of a household Group


class Unborn(_Strict):
    """An unborn child's CPP brings the pregnant woman's maternity misses into scope."""

    status: str = "unborn-cpp"
    service_codes: str = Field(min_length=1)
    note: str = Field(min_length=1)


class RulesFile(_Strict):
    version: str = Field(pattern=r"^[A-Za-z0-9._-]+$")  # it becomes part of a policy URI
    patterns: Patterns
    young_person: YoungPerson
    decided: Decided = Decided()
    clinical_risk: ClinicalRisk
    household: Household
    unborn: Unborn
    owners: dict[str, str]
    care: dict[Literal["primary", "secondary"], dict[str, str]] = {}
    rule: list[Cell]


class CalendarFile(_Strict):
    timezone: str = "Europe/London"
    nation: Literal[*NATIONS] = "england-and-wales"  # type: ignore[valid-type]
    closures: list[date] = []
    holidays: None = None  # the old hand-kept list: refused with a pointer to the new keys

    @field_validator("holidays", mode="before")
    @classmethod
    def _no_bank_holiday_list(cls, value: object) -> None:
        raise ValueError("bank holidays now come from the holidays package for `nation`; list only "
                         "the trust's extra closure days, under `closures`")


class Owner(_Strict):
    text: str
    reference: dict[str, Any] | None = None


class OwnersFile(_Strict):
    roles: dict[str, Owner]


@dataclass(frozen=True, slots=True)
class Rules:
    """The loaded table: cells by (situation, column), thresholds, calendar and owners."""

    version: str
    patterns: Patterns
    cells: dict[tuple[str, str], Cell]
    young_person: YoungPerson
    owner_roles: dict[str, str]
    owners: dict[str, Owner]
    holidays: WorkingCalendar  # the days that are not working days: bank holidays and closures
    timezone: str
    decided: Decided
    clinical_risk: ClinicalRisk
    household: Household
    unborn: Unborn
    # primary / secondary care (rules.md s.8): a role's owner where a source's care differs
    care: dict[str, dict[str, str]]

    def role_for(self, role: str, care: str) -> str:
        """The owner role for ``role`` in ``care`` (primary or secondary)."""
        return self.care.get(care, {}).get(role, role)

    def cell(self, situation: str, column: str) -> Cell:
        """The cell for a situation and column (``retracted`` has one cell for every column)."""
        return self.cells.get((situation, column)) or self.cells[(situation, "any")]


def load_rules(root: Path) -> Rules:
    """Load rules.toml, calendar.toml and owners.toml from ``root``; RulesError on any fault."""
    path = root / "rules.toml"
    spec, text = load_model(RulesFile, path, RulesError)
    cells = _index_cells(spec, path, text)
    calendar, working = _load_calendar(root / "calendar.toml")
    owners, _ = load_model(OwnersFile, root / "owners.toml", RulesError)
    _check_owners(spec, owners, path, text)
    return Rules(
        version=spec.version,
        patterns=spec.patterns,
        cells=cells,
        young_person=spec.young_person,
        owner_roles=dict(spec.owners),
        owners=dict(owners.roles),
        holidays=working,
        timezone=calendar.timezone,
        decided=spec.decided,
        clinical_risk=spec.clinical_risk,
        household=spec.household,
        unborn=spec.unborn,
        care={k: dict(v) for k, v in spec.care.items()},
    )


def _load_calendar(path: Path) -> tuple[CalendarFile, WorkingCalendar]:
    """calendar.toml and the working-day calendar built from it, once, at start-up.

    A closure outside the years the calendar knows is refused here, so the file cannot suggest
    that the adapter counts working days where it will not (see guidance/workdays.py).
    """
    calendar, text = load_model(CalendarFile, path, RulesError)
    working = uk_calendar(calendar.nation, calendar.closures)
    for i, day in enumerate(calendar.closures):
        if not working.knows(day):
            raise RulesError(str(path), locate(text, ("closures", i)),
                             f"closure {day} is outside the working-day calendar "
                             f"({working.first.year}-{working.last.year})")
    return calendar, working


def _index_cells(spec: RulesFile, path: Path, text: str) -> dict[tuple[str, str], Cell]:
    cells: dict[tuple[str, str], Cell] = {}
    for i, cell in enumerate(spec.rule):
        key = (cell.situation, cell.column)
        if key in cells:
            raise RulesError(str(path), locate(text, ("rule", i)), f"a second cell for {key}")
        if cell.situation == "over-engagement" and any(
            a.code == "send-wnb-letter" for a in cell.actions
        ):
            where = locate(text, ("rule", i, "actions"))
            raise RulesError(str(path), where, "over-engagement must never write to the parents")
        cells[key] = cell
    missing = [
        f"{s}/{c}" for s in SITUATIONS for c in COLUMNS if (s, c) not in cells
    ] + ([] if ("retracted", "any") in cells else ["retracted/any"])
    if missing:
        raise RulesError(str(path), "rule", f"no cell for: {', '.join(missing)}")
    return cells


def _check_owners(spec: RulesFile, owners: OwnersFile, path: Path, text: str) -> None:
    for code in sorted(ACTION_CODES):
        role = spec.owners.get(code)
        if role is None:
            raise RulesError(str(path), locate(text, ("owners",)), f"no owner role for '{code}'")
        if role not in owners.roles:
            where = locate(text, ("owners", code))
            raise RulesError(str(path), where, f"role '{role}' is not in owners.toml")
    for care, roles in spec.care.items():
        for role, other in roles.items():
            if other not in owners.roles:
                where = locate(text, ("care", care, role))
                raise RulesError(str(path), where, f"role '{other}' is not in owners.toml")
