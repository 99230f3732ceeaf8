"""A search against the real FHIR server returns every result, not only its first page.

After an outage the adapter catches up with a ``_lastUpdated`` search; what does not fit on one
page must still be read (issue 8), and a page cap bounds how much one search may read.
"""

from __future__ import annotations

import uuid

import aiohttp

from fhir_engagement.fhirserver.client import FhirClient
from tests.integration.conftest import FhirServer

RESULTS = 7
PAGE = 3  # _count: three pages, the last one short


async def _seven_flags(client: FhirClient) -> tuple[str, set[str]]:
    """RESULTS Flags about a patient of this test's own; their patient reference and ids."""
    patient = f"Patient/paging-{uuid.uuid4().hex[:12]}"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Flag"},
         "resource": {"resourceType": "Flag", "status": "active",
                      "code": {"text": f"paging test {n}"}, "subject": {"reference": patient}}}
        for n in range(RESULTS)]}
    answer = await client.transaction(bundle)
    locations = [e["response"]["location"] for e in answer["entry"]]
    return patient, {loc.split("Flag/", 1)[1].split("/")[0] for loc in locations}


async def test_a_search_with_more_results_than_count_returns_all_of_them(
    fhir_server: FhirServer,
) -> None:
    async with aiohttp.ClientSession() as session:
        client = FhirClient(fhir_server.base_url, session)
        patient, written = await _seven_flags(client)
        found = await client.search("Flag", {"patient": patient, "_count": str(PAGE)})
    assert len(found) == RESULTS
    assert {f["id"] for f in found} == written
    assert client.pages_capped == 0


async def test_the_page_cap_stops_a_search_and_counts_it(fhir_server: FhirServer) -> None:
    async with aiohttp.ClientSession() as session:
        client = FhirClient(fhir_server.base_url, session, max_pages=2)
        patient, written = await _seven_flags(client)
        found = await client.search("Flag", {"patient": patient, "_count": str(PAGE)})
    assert len(found) == 2 * PAGE
    assert {f["id"] for f in found} < written
    assert client.pages_capped == 1
