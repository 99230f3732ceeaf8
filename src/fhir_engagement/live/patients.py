"""Which Patient the target FHIR server holds for a child's identifier: asked once, remembered.

The outbox names a child by a literal ``Patient/{id}`` on the server it writes to, because servers
that index only literal references (HAPI's default) never list an identifier-only subject under
``Task?patient=``. That id is found by ``GET Patient?identifier=system|value`` and kept in the
store (``server_patients``) per server, so a child costs one search per server per ``ttl``.

A server that held no such Patient, or several, is asked again after at most ``MISS_TTL``: the
child may be registered there soon, and a decision is rare enough per child that the search is
cheap. Nothing here logs an identifier: log lines carry counts only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fhir_engagement.decisions.references import Criterion
from fhir_engagement.errors import AuthRequiredError, PermanentDeliveryError
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.store.base import ServerPatient, ServerPatients

__all__ = ["DEFAULT_TTL", "MISS_TTL", "PatientDirectory", "Resolution"]

DEFAULT_TTL = 86400.0  # seconds a found Patient id is trusted (a merge on the server is rare)
MISS_TTL = 600.0  # seconds a "none or several" answer is trusted before the server is asked again
_LOG = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Resolution:
    """The server's Patient id per criterion (None: none or several), and which came from the store.

    ``cached`` names the literal answers not asked for just now: the ones to forget and ask
    again if the server says the Patient is gone (404/410 on write).
    """

    answers: dict[Criterion, str | None]
    cached: frozenset[Criterion]


class PatientDirectory:
    """Look up, cache and forget one server's Patients by identifier."""

    def __init__(
        self, store: ServerPatients, client: FhirClient, ttl: float = DEFAULT_TTL,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.store, self.client, self.clock = store, client, clock
        self.ttl = timedelta(seconds=ttl)
        self.miss_ttl = timedelta(seconds=min(ttl, MISS_TTL))

    async def resolve(self, criteria: Iterable[Criterion]) -> Resolution:
        """Every criterion's Patient id, from the store while fresh, else from the server.

        Raises:
            RetryableDeliveryError: the server did not answer the search; the batch waits.
        """
        answers: dict[Criterion, str | None] = {}
        cached: set[Criterion] = set()
        for criterion in sorted(set(criteria)):
            known = self.store.server_patient(self.client.base_url, *criterion)
            if known is not None and self._fresh(known):
                answers[criterion] = known.patient_id
                if known.patient_id is not None:
                    cached.add(criterion)
            else:
                answers[criterion] = await self._ask(criterion)
        return Resolution(answers, frozenset(cached))

    def forget(self, criteria: Iterable[Criterion]) -> None:
        """The server said a Patient we named is gone (merged, deleted): ask it again next time."""
        for criterion in criteria:
            self.store.forget_server_patient(self.client.base_url, *criterion)

    def _fresh(self, known: ServerPatient) -> bool:
        life = self.ttl if known.patient_id is not None else self.miss_ttl
        return self.clock() - known.checked < life

    async def _ask(self, criterion: Criterion) -> str | None:
        """The one Patient the server holds for the identifier, else None (and remember which).

        A server that refuses the search itself (4xx) gets no answer cached: the batch is still
        written, with an identifier Reference, and the next batch asks again.
        """
        system, value = criterion
        try:
            found = await self.client.search("Patient", {"identifier": f"{system}|{value}"})
        except (PermanentDeliveryError, AuthRequiredError) as error:
            _LOG.warning("a Patient search was refused (HTTP %s, %s); the child is named by "
                         "identifier", error.status, type(error).__name__)
            return None
        ids = {str(p["id"]) for p in found if p.get("resourceType") == "Patient" and p.get("id")}
        patient = next(iter(ids)) if len(ids) == 1 else None
        if len(ids) > 1:
            _LOG.warning("a Patient search found %d Patients for one identifier; the child is "
                         "named by identifier", len(ids))
        self.store.set_server_patient(self.client.base_url, system, value,
                                      ServerPatient(patient, self.clock()))
        return patient
