"""The SNOMED CT defaults of rules.md section 8's code sets: verified or said to be unverified.

Issue 13: each code is checked against shared/guidance (codes.md); one the guidance does not name
carries the comment "unverified: check against the trust's terminology server" right above its
``[[code]]`` table, and is listed in docs/decisions.md, so a trust knows which to confirm.
"""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.conftest import MAPPINGS, ROOT

GUIDANCE = ROOT.parent / "shared" / "guidance"
SECTION8_SETS = ("high-risk-service", "status-complex-needs", "maternity-service",
                 "status-unborn-cpp", "household-group")
MARK = "# unverified: check against the trust's terminology server"
SNOMED = "http://snomed.info/sct"


def _codes_md() -> str:
    path = GUIDANCE / "codes.md"
    if not path.is_file():
        pytest.fail(f"the guidance is missing: {path} (read in place, beside the repository)",
                    pytrace=False)
    return path.read_text()


def _snomed(name: str) -> list[str]:
    doc = tomllib.loads((MAPPINGS / "codes" / f"{name}.toml").read_text())
    return [c["code"] for c in doc.get("code", []) if c["system"] == SNOMED]


def _marked(name: str) -> set[str]:
    """The codes whose [[code]] table has the unverified comment on the line above it."""
    lines = (MAPPINGS / "codes" / f"{name}.toml").read_text().splitlines()
    out = set()
    for i, line in enumerate(lines):
        if line.strip() == "[[code]]" and i > 0 and lines[i - 1].strip() == MARK:
            code = next(m[1] for rest in lines[i + 1:] if (m := re.match(r'code = "(.+)"', rest)))
            out.add(code)
    return out


@pytest.mark.parametrize("name", SECTION8_SETS)
def test_each_code_is_in_the_guidance_or_marked_unverified(name: str) -> None:
    guidance = _codes_md()
    for code in _snomed(name):
        assert (code in guidance) != (code in _marked(name)), (name, code)


def test_every_unverified_code_is_listed_in_the_decisions() -> None:
    decisions = (ROOT / "docs" / "decisions.md").read_text()
    unverified = {c for name in SECTION8_SETS for c in _marked(name)}
    assert unverified  # the walk sees the marks
    assert sorted(c for c in unverified if f"`{c}`" not in decisions) == []


def test_the_ent_code_is_not_a_high_risk_service() -> None:
    """418960008 is Otolaryngology where the tests name an ENT clinic (ingest/test_fhir_service);
    as a high-risk code it would give every ENT miss the vulnerable timings."""
    assert "418960008" not in _snomed("high-risk-service")
