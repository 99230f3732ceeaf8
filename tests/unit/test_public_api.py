"""The public API: ``__all__`` is sorted and complete (httpx-style check)."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil

import pytest

import fhir_engagement

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(fhir_engagement.__path__, "fhir_engagement.")
    if m.name != "fhir_engagement.__main__"
)


def test_the_package_all_is_sorted_and_every_name_exists() -> None:
    names = fhir_engagement.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(fhir_engagement, name), name


def test_every_error_class_is_exported() -> None:
    errors = [n for n in dir(fhir_engagement.errors) if n.endswith("Error")]
    assert set(errors) <= set(fhir_engagement.__all__)


def test_the_version_is_the_distribution_version() -> None:
    assert fhir_engagement.__version__ == importlib.metadata.version("fhir-engagement")


@pytest.mark.parametrize("module", MODULES)
def test_every_name_in_a_module_all_exists(module: str) -> None:
    imported = importlib.import_module(module)
    for name in getattr(imported, "__all__", ()):
        assert hasattr(imported, name), f"{module}.__all__ names missing {name}"
