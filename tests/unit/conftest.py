"""Fixtures for the unit tests: the shipped mappings and rules, loaded once."""

from __future__ import annotations

import pytest

from fhir_engagement.guidance.rules import Rules, load_rules
from fhir_engagement.signals.mappings import Mappings, load_mappings
from tests.conftest import MAPPINGS


@pytest.fixture(scope="session")
def mappings() -> Mappings:
    return load_mappings(MAPPINGS)


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules(MAPPINGS)
