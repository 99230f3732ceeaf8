"""The Task wording that follows a source's care setting (mappings/wording.toml; rules.md s.8).

The guidance has two versions, one for primary care (GP practices) and one for secondary care
(hospitals, community services, CAMHS), and "owners and wording follow" a source's setting. The
owner half is rules.toml ``[care.*]``; this is the wording half: per setting, the sentence a Task's
description opens with (in place of the action CodeSystem's definition) and the impact question
its first note asks. An event from no configured source keeps the generic words (the definitions
and the questions in decisions/task.py), so a single-source replay reads as it always did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from fhir_engagement.config import load_model
from fhir_engagement.errors import RulesError
from fhir_engagement.model import ACTION_CODES

__all__ = ["CARES", "TaskWording", "load_wording"]

CARES = ("primary", "secondary")
# The situations whose impact question a setting may reword (decide.py's rows); "missed" is the
# guidance's own question, asked of every missed appointment.
QUESTION_KEYS = frozenset({
    "missed", "left-against-advice", "left-before-seen", "refused-assessment", "over-engagement",
    "intermittent", "discharged-after-wnb", "household",
})


class _Setting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: dict[str, str] = {}
    question: dict[str, str] = {}

    @field_validator("description")
    @classmethod
    def _actions(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - ACTION_CODES)
        if unknown:
            raise ValueError(f"unknown action code '{unknown[0]}'")
        return value

    @field_validator("question")
    @classmethod
    def _situations(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - QUESTION_KEYS)
        if unknown:
            raise ValueError(f"unknown situation '{unknown[0]}' (one of "
                             f"{', '.join(sorted(QUESTION_KEYS))})")
        return value


class _WordingFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    primary: _Setting = _Setting()
    secondary: _Setting = _Setting()


@dataclass(frozen=True, slots=True)
class TaskWording:
    """Per setting: description sentences by action code, impact questions by situation."""

    descriptions: dict[str, dict[str, str]] = field(default_factory=dict)
    questions: dict[str, dict[str, str]] = field(default_factory=dict)

    def description(self, care: str, code: str, default: str) -> str:
        """The setting's opening sentence for ``code``, else ``default`` (the definition)."""
        return self.descriptions.get(care, {}).get(code, default)

    def question(self, care: str, situation: str, default: str) -> str:
        """The setting's impact question for ``situation`` ("missed" for a missed appointment)."""
        return self.questions.get(care, {}).get(situation, default)


def load_wording(path: Path) -> TaskWording:
    """Load ``path`` (mappings/wording.toml); none there: the generic words everywhere.

    Raises:
        RulesError: the file is not valid TOML or names an unknown action or situation.
    """
    if not path.exists():
        return TaskWording()
    spec, _ = load_model(_WordingFile, path, RulesError)
    settings: dict[Literal["primary", "secondary"], _Setting] = {
        "primary": spec.primary, "secondary": spec.secondary}
    return TaskWording({c: dict(s.description) for c, s in settings.items()},
                       {c: dict(s.question) for c, s in settings.items()})
