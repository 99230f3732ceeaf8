"""Who read which child's data, and when: the local audit of chronology access.

A chronology shows identifiable data, so it is never shown unless its read is first recorded
(and committed) in the store's ``audit`` table. The row names the person, the time and the child,
the child only as a keyed hash (HMAC-SHA-256 with a secret kept in the store): the data protection
officer can check whether a given child was looked at, but the log itself leaks no NHS number,
and a plain hash would (there are only about a billion NHS numbers to try).
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
from datetime import UTC, datetime

from fhir_engagement.errors import ReportError
from fhir_engagement.store.base import Access, Store

__all__ = ["record_access", "requester", "subject_hash"]


def requester(explicit: str | None = None) -> str:
    """The person asking: ``--requested-by`` if given, else the operating-system user.

    Raises:
        ReportError: ``--requested-by`` was given but blank.
    """
    if explicit is not None:
        if not explicit.strip():
            raise ReportError("--requested-by must name the person asking")
        return explicit.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return f"uid {os.getuid()}"


def subject_hash(key: bytes, child: str) -> str:
    """The child as the audit log names it; the same child always gives the same hash."""
    return hmac.new(key, child.encode(), hashlib.sha256).hexdigest()[:32]


def record_access(
    store: Store, action: str, child: str, who: str, detail: str = "",
    now: datetime | None = None,
) -> Access:
    """Write the audit row and commit it, before anything is shown."""
    access = Access(now or datetime.now(UTC), who, action,
                    subject_hash(store.audit_key(), child), detail)
    store.record_access(access)
    store.commit()
    return access
