"""A CP-IS-shaped CareTeam -> the child's status fact and the responsible local authority.

NHS England's CP-IS FHIR R4 API answers ``CareTeam?patient:identifier=...nhs-number|N`` with one
CareTeam per plan: ``category`` from the England-ChildProtectionPlan value set (the CPP, LAC and
unborn-CPP SNOMED codes of mappings/codes/status-*.toml), ``period`` the plan's dates,
``managingOrganization`` the responsible local authority and ``telecom`` its contact
(../shared/guidance/codes.md). A status found there counts like a local Flag (rules.md s.2).
Pure: what the server sent in, values out; nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

from fhir_engagement.ingest.fhirtime import parse_datetime
from fhir_engagement.ingest.references import NHS_NUMBER_SYSTEM
from fhir_engagement.model import StatusFact, scoped

__all__ = ["read_careteam", "subject_nhs_number"]

_ACTIVE = frozenset({"active"})  # proposed, suspended, inactive, entered-in-error: no plan now
_MAX_TEXT = 120  # a contact is a name and a number or two, never a document


def read_careteam(res: Any, patient: str, source: str) -> tuple[StatusFact | None, str]:
    """The plan a CareTeam stands for, filed under ``patient`` (the alias the child is known by
    here), and the local authority's contact as one line; (None, "") for what is not a plan."""
    if not isinstance(res, dict) or res.get("resourceType") != "CareTeam":
        return None, ""
    codes = frozenset(_codes(res.get("category")))
    if not codes:
        return None, ""
    period = res.get("period") if isinstance(res.get("period"), dict) else {}
    status = res.get("status")
    active = status is None or status in _ACTIVE
    rid = res.get("id") if isinstance(res.get("id"), str) else "unknown"
    fact = StatusFact(scoped(f"CareTeam/{rid}", source), patient, codes,
                      _time(period.get("start")), _time(period.get("end")), active)
    return fact, _contact(res) if active else ""


def subject_nhs_number(res: Any) -> str | None:
    """The NHS number a CareTeam's subject names by identifier, if it names one that way."""
    subject = res.get("subject") if isinstance(res, dict) else None
    ident = subject.get("identifier") if isinstance(subject, dict) else None
    if isinstance(ident, dict) and ident.get("system") == NHS_NUMBER_SYSTEM:
        value = ident.get("value")
        return value if isinstance(value, str) else None
    return None


def _codes(categories: Any) -> list[str]:
    found: list[str] = []
    for concept in categories if isinstance(categories, list) else []:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                found.append(f"{coding.get('system', '')}|{coding['code']}")
    return found


def _time(value: Any) -> Any:
    return parse_datetime(value) if isinstance(value, str) else None


def _contact(res: dict[str, Any]) -> str:
    """"Hampshire County Council (0300 555 1384)": who holds the plan and how to reach them."""
    orgs = res.get("managingOrganization")
    org = orgs[0] if isinstance(orgs, list) and orgs and isinstance(orgs[0], dict) else {}
    name = org.get("display") if isinstance(org.get("display"), str) else ""
    telecom = res.get("telecom") if isinstance(res.get("telecom"), list) else []
    ways = [t["value"] for t in telecom if isinstance(t, dict) and isinstance(t.get("value"), str)]
    text = f"{name} ({', '.join(ways)})" if ways else name
    return "".join(ch for ch in text if ch.isprintable())[:_MAX_TEXT]
