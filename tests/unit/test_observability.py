"""Logs: JSON lines, and identifiers masked at INFO even if a message carried one."""

from __future__ import annotations

import logging

import orjson

from fhir_engagement.observability import JsonFormatter, RedactIdentifiers


def _record(level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("fhir_engagement.test", level, __file__, 1, msg, args, None)


def test_nhs_numbers_and_patient_references_are_masked_at_info() -> None:
    record = _record(logging.INFO, "child %s (%s) at Patient/abc-1", "999 000 1073", "nhs:9990001073")
    assert RedactIdentifiers().filter(record)
    assert record.getMessage() == "child [redacted] ([redacted]) at [redacted]"


def test_debug_is_left_alone_for_a_developer_on_test_data() -> None:
    record = _record(logging.DEBUG, "Patient/abc-1")
    RedactIdentifiers().filter(record)
    assert record.getMessage() == "Patient/abc-1"


def test_one_json_object_a_line() -> None:
    line = JsonFormatter().format(_record(logging.WARNING, "delivery %s rescheduled", "fe-prov-1"))
    entry = orjson.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["message"] == "delivery fe-prov-1 rescheduled"
