"""The words reports print for codes: the guidance table's row names, and CodeSystem displays."""

from __future__ import annotations

from collections.abc import Mapping

from fhir_engagement.decisions.codesystems import CodeSystems

__all__ = ["PATTERNS", "display"]

# The rows of the guidance table (rules.md s.5), in its order, with the words the table uses.
PATTERNS: Mapping[str, str] = {
    "single-wnb": "single WNB",
    "repeat-wnb": "repeat WNB",
    "persistent-wnb": "persistent WNB",
    "intermittent": "intermittent",
    "over-engagement": "over-engagement",
    "refused-assessment": "refused assessment",
    "left-against-advice": "left against advice",
    "left-before-seen": "left before seen",
}


def display(systems: CodeSystems, system: str, code: str) -> str:
    """The CodeSystem's display, or the code itself for one the published CodeSystem lacks
    (a store written by an older or newer version keeps its codes readable)."""
    try:
        return systems.display(system, code)
    except KeyError:
        return code
