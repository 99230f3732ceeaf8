"""A small FHIR data set whose report figures are worked out by hand, below, before any code runs.

Written as FHIR R4 JSON files (a collection Bundle, plus a second file with the corrected version
of one Appointment) and replayed through ``fhir_engagement.replay.replay``: the same path a tester
takes. It lives here, not under fixtures/, because tests/scenarios replays fixtures/ and counts
what it writes.

Providers: A = Organization/trust-a and B = Organization/trust-b (UK Core BookingOrganization
extension); C = HealthcareService/clinic-c (no booking organisation: the participant service).
Times are UTC; quarters are Europe/London quarters. No child has a known status (CPP/LAC/CIN).

Appointments, by provider and London quarter (NB = noshow, F = fulfilled):

  C 2024-Q4   c2 NB 2024-12-31 23:30Z (GMT: still 31 Dec)      -> appointment, not brought
              c3 F  2024-12-02                                  -> appointment
              => 2 appointments, 1 not brought, 50.0%
  A 2025-Q1   c1 NB 01-13, c1 F 01-20, c1 NB 02-10              -> 3 appointments, 2 NB
              c2 F 01-14, 02-11, 03-11; c3 F 01-15, 02-12, 03-12 -> 6 appointments
              c5 F 03-03                                        -> 1 appointment
              a1 (adult, 45) NB 02-03                           -> adults excluded 1
              c4 cancelled by the family x3 (01-06, 02-03, 03-03) -> not appointments
              c2 booked 03-24 (no outcome yet)                  -> not an appointment
              => 10 appointments, 2 not brought, 20.0%, adults excluded 1
  A 2025-Q2   c5 F 2025-03-31 23:30Z (BST: 1 April 00:30)        -> appointment in Q2
              c5 NB 04-07, corrected to F the next day          -> attended: appointment, not NB
              c6 (infant) NB home visit 05-06                    -> no-access visit: NB
              c2 F 05-07                                        -> appointment
              => 4 appointments, 1 not brought, 25.0%
  B 2025-Q1   c3 F 01-22, 02-19; c7 F 01-23, 02-20, 03-20        -> 5 appointments, 0 NB, 0.0%
              c3 Encounter (planned, finished) 03-05            -> not an appointment
  B 2025-Q2   c3 NB 04-16; c7 F 04-17, 05-15                    -> 3 appointments, 1 NB, 33.3%
  B 2025-Q3   c2 F 2025-06-30 23:30Z (BST: 1 July 00:30)        -> 1 appointment, 0.0%

  All providers: 2024-Q4 2/1; 2025-Q1 15/2 (13.3%), adults 1; 2025-Q2 7/2 (28.6%); 2025-Q3 1/0.

Pattern mix (rules.toml, "none" column unless the child is an infant, who is "vulnerable"):

  2024-Q4  c2 single WNB (first miss)                            -> Tasks: review-impact 1
  2025-Q1  c1 single WNB (01-13), then repeat WNB (02-10: 2nd in 12 months)
           c4 intermittent (3rd family cancellation in 6 months, 03-03)
           -> children: single 1, repeat 1, intermittent 1; 2 children with a pattern
           -> Flags (current code, quarter first raised): disengagement-repeat 1 (c1),
              disengagement-intermittent 1 (c4)
           -> Tasks: c1 single: review-impact; c1 repeat/none: send-wnb-letter, review-impact,
              inform-gp, inform-health-visitor; c4 intermittent/none: curiosity-review
              = review-impact 2, send-wnb-letter 1, inform-gp 1, inform-health-visitor 1,
                curiosity-review 1
  2025-Q2  c5 single WNB 04-07, then retracted: not counted as a child with a pattern
           c6 repeat WNB (an infant's first no-access visit counts as repeat; vulnerable)
           c3 single WNB 04-16 (no earlier miss)
           -> children: single 1 (c3), repeat 1 (c6); 2 children with a pattern
           -> Flags: disengagement-repeat 1 (c6)
           -> Tasks: c5 review-impact (single) + review-impact (the retraction asks again);
              c6 repeat/vulnerable: send-wnb-letter, inform-gp, inform-health-visitor,
              contact-childrens-services, review-impact; c3 review-impact
              = review-impact 4, send-wnb-letter 1, inform-gp 1, inform-health-visitor 1,
                contact-childrens-services 1
  2025-Q3  nothing with a pattern (c2's appointment was attended)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BOOKING_ORG = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-BookingOrganization"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SERVICE = "https://example-trust.nhs.uk/fhir/CodeSystem/service"
HOME_VISIT = {"system": "http://snomed.info/sct", "code": "439708006", "display": "Home visit"}
CANCEL = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
A, B, C = "Organization/trust-a", "Organization/trust-b", "HealthcareService/clinic-c"


def nhs(nine: str) -> str:
    """A valid NHS number from its first nine digits (the modulus-11 check digit appended)."""
    total = sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    if check == 10:
        raise ValueError(f"{nine}: no valid check digit; pick another")
    return f"{nine}{check}"


# name -> (NHS number or None, birth date). c7 has no NHS number: known only as Patient/rp-c7.
CHILDREN: dict[str, tuple[str | None, str]] = {
    "c1": (nhs("999100001"), "2015-05-05"),
    "c2": (nhs("999100012"), "2012-03-03"),
    "c3": (nhs("999100003"), "2010-10-10"),
    "c4": (nhs("999100004"), "2016-06-16"),
    "c5": (nhs("999100005"), "2014-04-14"),
    "c6": (nhs("999100006"), "2024-09-01"),
    "a1": (nhs("999100007"), "1980-01-01"),
    "c7": (None, "2013-07-07"),
}
UNKNOWN_NHS = nhs("999100008")  # valid, but nobody in the data set has it

# (id, child, provider, start UTC, status, extra)
APPOINTMENTS: list[tuple[str, str, str, str, str, dict[str, Any]]] = [
    ("c-1", "c2", C, "2024-12-31T23:30:00Z", "noshow", {}),
    ("c-2", "c3", C, "2024-12-02T10:00:00Z", "fulfilled", {}),
    ("a-1", "c1", A, "2025-01-13T10:00:00Z", "noshow", {}),
    ("a-2", "c1", A, "2025-01-20T10:00:00Z", "fulfilled", {}),
    ("a-3", "c1", A, "2025-02-10T10:00:00Z", "noshow", {}),
    ("a-4", "c2", A, "2025-01-14T10:00:00Z", "fulfilled", {}),
    ("a-5", "c2", A, "2025-02-11T10:00:00Z", "fulfilled", {}),
    ("a-6", "c2", A, "2025-03-11T10:00:00Z", "fulfilled", {}),
    ("a-7", "c3", A, "2025-01-15T10:00:00Z", "fulfilled", {}),
    ("a-8", "c3", A, "2025-02-12T10:00:00Z", "fulfilled", {}),
    ("a-9", "c3", A, "2025-03-12T10:00:00Z", "fulfilled", {}),
    ("a-10", "c5", A, "2025-03-03T10:00:00Z", "fulfilled", {}),
    ("a-11", "a1", A, "2025-02-03T10:00:00Z", "noshow", {}),
    ("a-12", "c4", A, "2025-01-06T10:00:00Z", "cancelled", {"reason": "pat"}),
    ("a-13", "c4", A, "2025-02-03T10:00:00Z", "cancelled", {"reason": "pat"}),
    ("a-14", "c4", A, "2025-03-03T10:00:00Z", "cancelled", {"reason": "pat"}),
    ("a-15", "c2", A, "2025-03-24T10:00:00Z", "booked", {}),
    ("a-16", "c5", A, "2025-03-31T23:30:00Z", "fulfilled", {}),
    ("a-17", "c5", A, "2025-04-07T10:00:00Z", "noshow", {"updated": "2025-04-07T12:00:00Z"}),
    ("a-18", "c6", A, "2025-05-06T10:00:00Z", "noshow", {"home_visit": True}),
    ("a-19", "c2", A, "2025-05-07T10:00:00Z", "fulfilled", {}),
    ("b-1", "c3", B, "2025-01-22T10:00:00Z", "fulfilled", {}),
    ("b-2", "c3", B, "2025-02-19T10:00:00Z", "fulfilled", {}),
    ("b-3", "c7", B, "2025-01-23T10:00:00Z", "fulfilled", {}),
    ("b-4", "c7", B, "2025-02-20T10:00:00Z", "fulfilled", {}),
    ("b-5", "c7", B, "2025-03-20T10:00:00Z", "fulfilled", {}),
    ("b-6", "c3", B, "2025-04-16T10:00:00Z", "noshow", {}),
    ("b-7", "c7", B, "2025-04-17T10:00:00Z", "fulfilled", {}),
    ("b-8", "c7", B, "2025-05-15T10:00:00Z", "fulfilled", {}),
    ("b-9", "c2", B, "2025-06-30T23:30:00Z", "fulfilled", {}),
]
# The next day, a-17's no-show is corrected: it was keyed in error, the child attended.
CORRECTION = ("a-17", "c5", A, "2025-04-07T10:00:00Z", "fulfilled",
              {"updated": "2025-04-08T09:00:00Z"})


def patient(name: str) -> dict[str, Any]:
    number, birth = CHILDREN[name]
    res: dict[str, Any] = {"resourceType": "Patient", "id": f"rp-{name}", "birthDate": birth,
                           "name": [{"family": "Report", "given": [name.upper()]}]}
    if number:
        res["identifier"] = [{"system": NHS_SYSTEM, "value": number}]
    return res


def appointment(ident: str, child: str, provider: str, start: str, status: str,
                extra: dict[str, Any]) -> dict[str, Any]:
    service = ({"coding": [HOME_VISIT]} if extra.get("home_visit")
               else {"coding": [{"system": SERVICE, "code": f"clinic-{ident}"}]})
    res: dict[str, Any] = {"resourceType": "Appointment", "id": f"rp-{ident}", "status": status,
                           "serviceType": [service], "start": start,
                           "participant": [{"actor": {"reference": f"Patient/rp-{child}"},
                                            "status": "accepted"}]}
    if extra.get("updated"):
        res["meta"] = {"lastUpdated": extra["updated"]}
    if provider.startswith("Organization/"):
        res["extension"] = [{"url": BOOKING_ORG, "valueReference": {"reference": provider}}]
    else:
        res["participant"].append({"actor": {"reference": provider}, "status": "accepted"})
    if extra.get("reason"):
        res["cancelationReason"] = {"coding": [{"system": CANCEL, "code": extra["reason"]}]}
    return res


def encounter() -> dict[str, Any]:
    """c3's clinic Encounter at B: raises 'attended', but an Encounter is not an appointment."""
    return {"resourceType": "Encounter", "id": "rp-e-1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "AMB"},
            "subject": {"reference": "Patient/rp-c3"},
            "period": {"start": "2025-03-05T10:00:00Z", "end": "2025-03-05T10:30:00Z"},
            "serviceProvider": {"reference": B}}


def write(folder: Path) -> list[Path]:
    """The data set as FHIR JSON files in ``folder``; returns them."""
    folder.mkdir(parents=True, exist_ok=True)
    resources = [*(patient(n) for n in CHILDREN), *(appointment(*a) for a in APPOINTMENTS),
                 encounter()]
    first = folder / "1-bundle.json"
    first.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                 "entry": [{"resource": r} for r in resources]}, indent=1))
    second = folder / "2-correction.json"
    second.write_text(json.dumps(appointment(*CORRECTION), indent=1))
    return [first, second]
