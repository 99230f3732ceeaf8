"""The WNB letter drafts written back with their Tasks to a real FHIR server (sekmet-fhir).

Scenario 40 asks for two letters (one per child), each with a GP copy: four CommunicationRequests,
each ``basedOn`` its send-wnb-letter Task as the server stored it (the transaction resolves the
Task's urn:uuid to its new id).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from fhir_engagement.decisions.ids import LETTER_SYSTEM
from tests.conftest import SCENARIOS, run_cli
from tests.integration.conftest import FhirServer

CASE = SCENARIOS / "40-wnb-letter-two-children"




async def _drafts(http: aiohttp.ClientSession, base: str) -> list[dict]:
    async with http.get(f"{base}/CommunicationRequest",
                        params={"identifier": f"{LETTER_SYSTEM}|", "_count": "50"}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json(content_type=None)
    return [e["resource"] for e in body.get("entry", [])
            if e["resource"]["identifier"][0]["system"] == LETTER_SYSTEM
            and "s40-" in e["resource"]["about"][0].get("reference", "")]


async def test_the_drafts_go_with_their_tasks_once(
    fhir_server: FhirServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    base = fhir_server.base_url
    args = ("replay", str(CASE), "--fhir-base", base, "--quiet")
    first = run_cli(*args, "--store", str(tmp_path / "a.sqlite3"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    drafts = await _drafts(http, base)
    assert len(drafts) == 4
    for draft in drafts:
        assert draft["status"] == "draft"
        task_ref = draft["basedOn"][0]["reference"]
        assert task_ref.startswith("Task/"), task_ref  # resolved by the server, not a urn:uuid
        async with http.get(f"{base}/{task_ref}") as resp:
            assert resp.status == 200, await resp.text()
            task = await resp.json(content_type=None)
        assert task["code"]["coding"][0]["code"] == "send-wnb-letter"
        assert task["focus"] == draft["about"][0]
    # The same input through a fresh store: the conditional creates find the drafts already there.
    again = run_cli(*args, "--store", str(tmp_path / "b.sqlite3"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(await _drafts(http, base)) == 4
