"""Who read which child's data, and when: the local audit table and its FHIR AuditEvent twin.

Identifiable data (a chronology, the raw content of a dead letter or inbox item) is never shown
unless its read is first recorded (and committed) in the store's ``audit`` table. The row names
the person, the time and what was read; a child only as a keyed hash (HMAC-SHA-256 with the audit
key, kept outside the store: store/auditkey.py). The data protection officer can check whether a
given child was looked at, but the table leaks no NHS number, and a plain hash would (there are
only about a billion NHS numbers to try).

The person is not free text: it is the configured ``operator`` identity (say the user's NHS
smartcard or directory name, set by whoever deploys the tool) recorded together with the
operating-system user the command runs as, or the OS user alone.

Each read is also an R4 ``AuditEvent`` (DICOM 110110 "Patient Record", action R) for the FHIR
server, where the trust's DPO searches audit trails beside the records they protect. There the
child is named by NHS number (the server holds the child's record under the same access rules),
and the local row's hash is carried in ``entity.detail`` so both trails can be matched.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_engagement.decisions.ids import BASE, DEVICE_SYSTEM, NHS_NUMBER_SYSTEM
from fhir_engagement.decisions.validate import validate_output
from fhir_engagement.store.base import Access, Store

__all__ = ["OPERATOR_SYSTEM", "Auditor", "Read", "audit_event", "record_access", "requester",
           "subject_hash"]

OPERATOR_SYSTEM = f"{BASE}/Id/operator"
KEPT_ITEM_SYSTEM = f"{BASE}/Id/kept-item"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"


def requester(operator: str | None = None) -> str:
    """The person asking: the configured ``operator`` with the OS user it runs as, else the OS user.

    Both, when they differ, because the operator setting is whatever the environment says while
    the OS user is what the machine authenticated: the audit keeps the claim and its evidence.
    """
    os_user = _os_user()
    name = (operator or "").strip()
    if not name or name == os_user:
        return os_user
    return f"{name} (OS user {os_user})"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return f"uid {os.getuid()}"


def subject_hash(key: bytes, subject: str) -> str:
    """The child (or item) as the audit table names it; the same one always gives the same hash."""
    return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()[:32]


def record_access(
    store: Store, key: bytes, action: str, subject: str, who: str, detail: str = "",
    now: datetime | None = None,
) -> Access:
    """Write the audit row and commit it, before anything is shown."""
    access = Access(now or datetime.now(UTC), who, action, subject_hash(key, subject), detail)
    store.record_access(access)
    store.commit()
    return access


@dataclass(frozen=True, slots=True)
class Read:
    """One audited read: the local row and the AuditEvent for the FHIR server."""

    access: Access
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Auditor:
    """Records reads for one person with one key; what ``open_chronology`` and reveals take."""

    key: bytes
    who: str

    def chronology(self, store: Store, child: str, nhs_number: str, detail: str = "") -> Read:
        """A child's chronology: the entity is the child, by NHS number."""
        access = record_access(store, self.key, "chronology", child, self.who, detail)
        what = {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs_number},
                "type": "Patient"}
        return Read(access, audit_event(access, what, ("1", "Person"), ("1", "Patient")))

    def letter(self, store: Store, child: str, what: dict[str, Any], detail: str = "") -> Read:
        """A WNB letter draft: it names the child and a parent, so it is read like a chronology;
        the entity is the child (by NHS number where known)."""
        access = record_access(store, self.key, "letter", child, self.who, detail)
        return Read(access, audit_event(access, what, ("1", "Person"), ("1", "Patient")))

    def reveal(self, store: Store, kind: str, item: int) -> Read:
        """The raw content of a kept item (``deadletter`` or ``inbox``): who it names is unknown
        until read, so the entity is the item itself."""
        name = f"{kind}/{item}"
        access = record_access(store, self.key, f"{kind} reveal", name, self.who,
                               f"{kind} item {item}, raw content")
        what = {"identifier": {"system": KEPT_ITEM_SYSTEM, "value": name},
                "display": f"{kind} item {item} (raw input, may name a child)"}
        return Read(access, audit_event(access, what, ("2", "System Object"),
                                        ("4", "Domain Resource")))


def audit_event(access: Access, what: dict[str, Any], entity_type: tuple[str, str],
                role: tuple[str, str]) -> dict[str, Any]:
    """The R4 AuditEvent of one read, validated (a defect here is a bug, not bad input)."""
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": {"system": _DCM, "code": "110110", "display": "Patient Record"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read",
                     "display": "read"}],
        "action": "R",
        "recorded": access.at.isoformat(),
        "outcome": "0",
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                           "extra-security-role-type",
                                 "code": "humanuser", "display": "human user"}]},
            "who": {"identifier": {"system": OPERATOR_SYSTEM, "value": access.who},
                    "display": access.who},
            "requestor": True,
        }],
        "source": {
            "observer": {"identifier": {"system": DEVICE_SYSTEM, "value": "fhir-engagement"},
                         "display": "fhir-engagement adapter"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                      "code": "4", "display": "Application Server"}],
        },
        "entity": [{
            "what": what,
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                     "code": entity_type[0], "display": entity_type[1]},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                     "code": role[0], "display": role[1]},
            "description": access.action,
            "detail": [{"type": "fhir-engagement-audit-subject", "valueString": access.subject}],
        }],
    }
    validate_output(event)
    return event
