"""(signal, pattern, status, age band) -> Decision: the rules-table cell that applies, and why.

Pure: the pipeline passes in the child's history and status; nothing here reads a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from fhir_engagement.guidance import patterns as pat
from fhir_engagement.guidance.rules import ActionSpec, Cell, Rules
from fhir_engagement.guidance.status import column_of
from fhir_engagement.guidance.workdays import due_at
from fhir_engagement.model import Action, ChildStatus, Decision, Event, FlagChange, HistoryItem

__all__ = ["HIGH_RISK", "UNBORN", "URGENT", "Situation", "decide", "decide_all",
           "decide_household", "decide_retraction"]

# Tags the pipeline gives an event from the code sets rules.toml names (rules.md s.8).
HIGH_RISK = "high-risk-service"
URGENT = "urgent-referral"
UNBORN = "maternity"
_PRIORITY_RANK = {"routine": 0, "urgent": 1, "asap": 2, "stat": 3}
_FLAG_RANK = {"PL": 0, "PM": 1, "PH": 2}
_UNKNOWN_AGE = "The child's age is unknown (no birth date): the rules treat them as a child."


@dataclass(frozen=True, slots=True)
class Situation:
    """Everything the rules need about one signal of one event."""

    event: Event
    signal: str
    history: Sequence[HistoryItem]
    status: ChildStatus
    band: str
    tags: frozenset[str] = frozenset()


def decide_all(s: Situation, rules: Rules) -> tuple[Decision, ...]:
    """Every decision one signal makes: its own row, and the intermittent row beside it when a
    missed appointment completes an alternation (docs/decisions.md: it accompanies the WNB
    ladder, never replaces it, so the impact question is still asked of every miss)."""
    found = [decide(s, rules)]
    also = _alongside(s, rules)
    if also is not None:
        found.append(_decided(s, rules, also))
    return tuple(d for d in found if d is not None)


def decide(s: Situation, rules: Rules) -> Decision | None:
    """The decision for one signal's own row, or None when the guidance asks for nothing."""
    finding = _finding(s, rules)
    return None if finding is None else _decided(s, rules, finding)


def _decided(s: Situation, rules: Rules, finding: pat.Finding) -> Decision:
    column = column_of(s.status)
    cell = rules.cell(finding.name, column)
    conditions = _conditions(s, rules)
    specs = [a for a in cell.actions if a.when is None or a.when in conditions]
    flag = _flag_of(cell, conditions)
    extra = ""
    risk = _clinical_risk(s, rules, finding.name)
    if risk:
        faster = rules.cell(finding.name, rules.clinical_risk.column)
        specs = _faster(specs, [a for a in faster.actions
                                if a.when is None or a.when in conditions]
                        + list(rules.clinical_risk.add))
        flag = _higher(flag, _flag_of(faster, conditions))
        extra = f" Clinical risk: {risk}, so the {rules.clinical_risk.column} column's timings."
    specs = _young_person(s, rules, finding.name, specs)
    statuses = ", ".join(sorted(s.status.statuses)) or "none known"
    why = (f"Rule {cell.id} (rules {rules.version}) fired: {finding.reason}. "
           f"Known status: {statuses}; age band: {s.band}.{extra}")
    notes = (rules.unborn.note,) if s.band == "unborn" else ()
    return _decision(s, rules, cell, specs, flag, why, finding.evidence, notes)


def decide_household(s: Situation, index: Decision, rules: Rules) -> Decision | None:
    """The Task each brother or sister gets when the index child's ``index`` decision reaches the
    household (rules.md s.8), or None. The column is the index child's; the text never names
    them (the pipeline names them by reference only)."""
    h = rules.household
    reaches = index.situation in h.situations or (
        index.column in h.any_pattern_columns and index.situation in h.any_pattern_situations)
    if not reaches:
        return None
    cell = rules.cell("household", index.column)
    why = (f"Rule {cell.id} (rules {rules.version}) fired: a brother or sister who shares a "
           f"parent or carer with this child reached {index.situation} (their rule "
           f"{index.rule_id}). No Flag is raised on this child from this alone.")
    return _decision(s, rules, cell, list(cell.actions), None, why, ())


def _flag_of(cell: Cell, conditions: set[str]) -> FlagChange | None:
    if cell.flag and (cell.flag.when is None or cell.flag.when in conditions):
        return FlagChange(_flag_kind(cell.flag.code), cell.flag.code, cell.flag.priority,
                          "clinical" if cell.flag.code == "over-engagement" else "safety")
    return None


def _clinical_risk(s: Situation, rules: Rules, situation: str) -> str:
    """Why this miss is a clinical risk (rules.md s.8), or '' when it is not one."""
    if situation not in rules.clinical_risk.situations:
        return ""
    reasons = [r for tag, r in ((HIGH_RISK, "a high-risk service"), (URGENT, "an urgent referral"))
               if tag in s.tags]
    return " and ".join(reasons)


def _faster(own: list[ActionSpec], other: list[ActionSpec]) -> list[ActionSpec]:
    """Both cells' actions, each code once at the more urgent priority (then the sooner due)."""
    out: dict[str, ActionSpec] = {}
    for spec in [*own, *other]:
        have = out.get(spec.code)
        if have is None or _urgency(spec) > _urgency(have):
            out[spec.code] = spec
    return list(out.values())


def _urgency(spec: ActionSpec) -> tuple[int, int]:
    days = spec.due_days
    return _PRIORITY_RANK[spec.priority], -(0 if days is None else days)


def _higher(a: FlagChange | None, b: FlagChange | None) -> FlagChange | None:
    if a is None or b is None:
        return a or b
    return b if _FLAG_RANK[b.priority] > _FLAG_RANK[a.priority] else a


def _young_person(
    s: Situation, rules: Rules, situation: str, specs: list[ActionSpec]
) -> list[ActionSpec]:
    """16-17 (rules.md s.5, s.8): classify-attendance instead of the letter until a clinician
    answers; then "was not brought" follows the child's ladder and "did not attend" keeps only
    the impact review (never a letter to the parents)."""
    if s.band != "young-person" or situation not in rules.young_person.situations:
        return specs
    if rules.decided.own_choice_status in s.status.statuses:
        return [a for a in specs if a.code in rules.decided.own_choice_keep]
    if rules.decided.reliant_status in s.status.statuses:
        return specs
    specs = [a for a in specs if a.code not in rules.young_person.remove]
    return [*specs, rules.young_person.add]


def decide_retraction(event: Event, signal: str, rules: Rules) -> Decision:
    """A signal's event was corrected: nothing is deleted, the practitioner is asked to review."""
    cell = rules.cell("retracted", "any")
    why = (f"Rule {cell.id} (rules {rules.version}) fired: the triggering event {event.key} "
           f"({signal}) was retracted by a later correction. Nothing was deleted; review whether "
           "the actions already asked for still stand.")
    probe = Situation(event, signal, (), ChildStatus(), "")
    return _decision(probe, rules, cell, list(cell.actions), None, why, (event.key,))


def _decision(
    s: Situation, rules: Rules, cell: Cell, specs: list[ActionSpec], flag: FlagChange | None,
    why: str, evidence: tuple[str, ...], extra_notes: tuple[str, ...] = (),
) -> Decision:
    tz = ZoneInfo(rules.timezone)
    actions = tuple(
        Action(a.code, a.priority, due_at(s.event.occurred, a.due_days, rules.holidays, tz),
               rules.owner_roles[a.code])
        for a in specs
    )
    notes = ((cell.note,) if cell.note else ()) + extra_notes
    return Decision(
        rule_id=cell.id,
        rules_version=rules.version,
        situation=cell.situation,
        column=cell.column,
        actions=actions,
        flag=flag,
        why=why,
        evidence=tuple(dict.fromkeys((*evidence, *s.status.evidence))),
        age_note=_UNKNOWN_AGE if s.band == "unknown" else "",
        notes=notes,
        event_date=s.event.occurred.astimezone(tz).date(),
    )


def _finding(s: Situation, rules: Rules) -> pat.Finding | None:
    p, ev = rules.patterns, s.event
    if s.signal in pat.MISSED:
        stage = pat.wnb_stage(s.history, ev.key, ev.occurred, ev.service, p)
        if s.signal == "no-access-visit" and s.band == "infant" and stage.name == "single":
            stage = pat.Finding("repeat", "an infant's first no-access visit counts as repeat",
                                stage.evidence)
        return pat.Finding(f"{stage.name}-wnb", stage.reason, stage.evidence)
    if s.signal in ("family-cancelled", "attended"):
        # An attendance is never alone a reason to act (rules.md s.1), but it may complete an
        # alternation of attended and missed appointments, which is the intermittent pattern.
        return pat.intermittent(s.history, ev.key, ev.occurred, p, s.signal)
    if s.signal == "discharged":
        return pat.discharged_after_wnb(s.history, ev.key, ev.occurred, ev.service, p)
    if s.signal == "unscheduled-attendance":
        return pat.over_engagement(s.history, ev.key, ev.occurred, ev.provider, p)
    reasons = {
        "refused-assessment": "a parent or carer declined assessment or treatment",
        "left-against-advice": "the child was taken away against medical advice",
        "left-before-seen": "the child left before care was given",
    }
    if s.signal in reasons:
        return pat.Finding(s.signal, reasons[s.signal], (ev.key,))
    return None


def _alongside(s: Situation, rules: Rules) -> pat.Finding | None:
    """The alternation a missed appointment completes, decided beside its WNB row."""
    if s.signal not in pat.MISSED:
        return None
    ev = s.event
    return pat.intermittent(s.history, ev.key, ev.occurred, rules.patterns, s.signal)


def _conditions(s: Situation, rules: Rules) -> set[str]:
    out = {"infant"} if s.band == "infant" else {"not-infant"}
    if pat.letter_asked(s.history):
        out.add("letter-asked")
    window = rules.patterns.left_before_seen_window_days
    if pat.happened_before(s.history, s.signal, s.event.occurred, window):
        out.add("happened-before")
    return out


def _flag_kind(code: str) -> str:
    return "over-engagement" if code == "over-engagement" else "engagement"
