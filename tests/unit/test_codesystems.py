"""The three published CodeSystems are valid FHIR R4 and match the codes the code uses."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.codesystem import CodeSystem

from fhir_engagement.model import ACTION_CODES, CONCERN_CODES, SIGNAL_CODES
from tests.conftest import ROOT

BASE = "https://fhir-engagement.org/fhir/CodeSystem"
FILES = {
    "CodeSystem-engagement-signal.json": (f"{BASE}/engagement-signal", SIGNAL_CODES),
    "CodeSystem-engagement-concern.json": (f"{BASE}/engagement-concern", CONCERN_CODES),
    "CodeSystem-engagement-action.json": (f"{BASE}/engagement-action", ACTION_CODES),
}


def test_there_are_exactly_three_codesystems() -> None:
    assert sorted(p.name for p in (ROOT / "codesystems").glob("*.json")) == sorted(FILES)


@pytest.mark.parametrize(("name", "url", "codes"), [(n, *v) for n, v in FILES.items()])
def test_codesystem_is_valid_r4_and_its_codes_are_the_model_codes(
    name: str, url: str, codes: frozenset[str]
) -> None:
    raw = orjson.loads(Path(ROOT / "codesystems" / name).read_bytes())
    system = CodeSystem.model_validate(raw)
    assert system.url == url
    assert system.status == "active"
    assert system.content == "complete"
    concepts = [c.code for c in system.concept or []]
    assert len(concepts) == len(set(concepts)), "a code is defined twice"
    assert set(concepts) == codes
    assert all(c.display for c in system.concept or [])
    if system.count is not None:
        assert system.count == len(concepts)
