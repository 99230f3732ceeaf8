"""Loading mappings/: the shipped files load; a broken file stops start-up naming file and line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from fhir_engagement.errors import MappingError
from fhir_engagement.model import SIGNAL_CODES
from fhir_engagement.signals.mappings import Mappings, load_mappings
from tests.conftest import MAPPINGS


def test_the_shipped_mappings_load(mappings: Mappings) -> None:
    assert "fhir/Appointment.toml" in mappings.files
    assert "local/example-trust.toml" in mappings.files
    assert re.fullmatch(r"[0-9a-f]{12}", mappings.digest)
    assert [s.name for s in mappings.statuses] == ["cpp", "lac", "cin", "vulnerable", "unborn-cpp",
                                                   "reliant-on-adult", "own-choice"]  # rules.md s.8
    ids = {r.id for r in mappings.rules_for("Appointment")}
    assert {"appointment-noshow", "appointment-cancelled-by-family"} <= ids


def test_every_rule_raises_a_known_signal(mappings: Mappings) -> None:
    for resource in ("Appointment", "Encounter", "Procedure", "ServiceRequest"):
        for rule in mappings.rules_for(resource):
            assert rule.signal in SIGNAL_CODES | {"retract"}, rule.id


def test_local_codes_join_a_code_set_only_for_their_source(mappings: Mappings) -> None:
    """mappings/local/example-trust.toml adds 'did not wait' for urn:example-trust: only."""

    def ed_codes(source: str) -> frozenset[str]:
        rule = next(r for r in mappings.rules_for("Encounter", source)
                    if r.id == "encounter-ecds-left-before-seen")
        return dict(rule.when)["ed-outcome"]

    assert "text:did not wait" in ed_codes("urn:example-trust:ed")
    assert "text:did not wait" not in ed_codes("")
    assert "text:did not wait" not in ed_codes("urn:other-trust:")


def _broken_copy(tmp_path: Path, file: str, old: str, new: str) -> tuple[Path, Path]:
    root = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, root)
    path = root / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"test setup: {old!r} must occur once in {file}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return root, path


def _line_of(path: Path, fragment: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"test setup: {fragment!r} not in {path}")


# (file, text to replace, replacement, words the reason must contain)
BROKEN = {
    "unknown signal code": (
        "fhir/Appointment.toml", 'signal = "refused-assessment"', 'signal = "refused"',
        "unknown signal 'refused'"),
    "unknown slot in a rule": (
        "fhir/Appointment.toml", 'status = ["cancelled"], cancellation-reason',
        'status = ["cancelled"], cancel-reason', "unknown slot 'cancel-reason'"),
    "unknown slot in [extensions]": (
        "fhir/Appointment.toml", 'delivery-channel = ["https:', 'delivery-chanel = ["https:',
        "unknown slot 'delivery-chanel'"),
    "bare code outside status": (
        "fhir/Procedure.toml", 'status-reason = ["@refusal"]', 'status-reason = ["183944003"]',
        "needs a system"),
    "missing @codeset": (
        "fhir/Encounter.toml", 'class = ["@unscheduled-class"]',
        'class = ["@unscheduled-classes"]', "no code set 'unscheduled-classes'"),
    "missing code set in a local file": (
        "local/example-trust.toml", "[codes.left-before-seen]", "[codes.left-before-sen]",
        "no code set 'left-before-sen'"),
    "TOML syntax error": (
        "codes/refusal.toml", 'code = "183944003"', 'code = "183944003', "not valid TOML"),
    "serviceCategory as the service": (
        "fhir/Appointment.toml", 'service = ["participant:HealthcareService",',
        'service = ["serviceCategory", "participant:HealthcareService",',
        "never the service itself"),
    "unknown service element": (
        "fhir/Encounter.toml", 'service = ["serviceType.reference", "serviceType"]',
        'service = ["serviceType.reference", "specialty"]', "unknown service element 'specialty'"),
    "service element named twice": (
        "fhir/Encounter.toml", 'service = ["serviceType.reference", "serviceType"]',
        'service = ["serviceType", "serviceType"]', "named twice"),
    "unknown resource type": (
        "fhir/Appointment.toml", 'resource = "Appointment"', 'resource = "Appointments"',
        "resource must be one of"),
}


@pytest.mark.parametrize(("file", "old", "new", "reason"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_mapping_file_names_the_file_and_the_line(
    tmp_path: Path, file: str, old: str, new: str, reason: str
) -> None:
    root, path = _broken_copy(tmp_path, file, old, new)
    with pytest.raises(MappingError) as caught:
        load_mappings(root)
    message = str(caught.value)
    assert caught.value.file == str(path)
    assert message.startswith(str(path))
    assert reason in message
    assert f"line {_line_of(path, new)}" in message


def test_a_fault_in_a_later_rule_names_that_rule_and_its_line(tmp_path: Path) -> None:
    """The 3rd Appointment rule (appointment-noshow-home-visit) refers to a missing code set."""
    broken = 'when = { status = ["noshow"], visit = ["@home-visits"] }'
    root, path = _broken_copy(
        tmp_path, "fhir/Appointment.toml",
        'when = { status = ["noshow"], visit = ["@home-visit"] }', broken)
    with pytest.raises(MappingError) as caught:
        load_mappings(root)
    assert "rule[2]" in str(caught.value)
    assert f"line {_line_of(path, broken)}" in str(caught.value)


def test_the_digest_changes_when_a_mapping_file_changes(tmp_path: Path, mappings: Mappings) -> None:
    """Provenance names the mappings by digest, so an edit must give a new one."""
    root, _ = _broken_copy(tmp_path, "codes/home-visit.toml", 'text = ["home visit"]',
                           'text = ["home visit", "domiciliary visit"]')
    assert load_mappings(root).digest != mappings.digest


def test_the_cp_is_child_protection_finding_gives_the_cpp_status(mappings: Mappings) -> None:
    """codes.md: SNOMED 224353004 (draft national patient-flags model for CP-IS) is a CPP code."""
    cpp = next(s for s in mappings.statuses if s.name == "cpp")
    assert "http://snomed.info/sct|224353004" in cpp.codes


def test_no_invented_attendance_system_is_shipped(mappings: Mappings) -> None:
    """codes.md: no FHIR CodeSystem is published for 'attended or did not attend'."""
    assert not any("attended-or-did-not-attend" in "".join(urls)
                   for ext in mappings.extensions.values() for urls in ext.values())
    for rule in mappings.rules_for("Appointment"):
        assert not any("attended-or-did-not-attend" in c for _, codes in rule.when for c in codes)


def test_the_service_order_is_data_with_a_healthcare_service_first(mappings: Mappings) -> None:
    """rules.md s.7: the HealthcareService or clinic reference, then the specialty/serviceType."""
    assert mappings.services["Appointment"][0] == "participant:HealthcareService"
    assert mappings.services["Appointment"].index("specialty") < \
        mappings.services["Appointment"].index("serviceType")
    assert all("serviceCategory" not in order for order in mappings.services.values())
