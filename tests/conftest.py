"""Shared test fixtures: paths, the loaded engine, a store on a real SQLite file."""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_engagement.config import Settings
from fhir_engagement.pipeline import Engine, load_engine
from fhir_engagement.store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
SCENARIOS = FIXTURES / "scenarios"
MAPPINGS = ROOT / "mappings"
REALDATA = ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def engine() -> Engine:
    return load_engine(Settings(mappings_dir=MAPPINGS))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "state.sqlite3"))
    yield s
    s.close()


# --- Log privacy (helper `privacy`): every log record of the whole suite is scanned -------------
# The fixtures' children (NHS numbers, names, birth dates) must never reach a log line, at any
# level. The strings are collected once from fixtures/scenarios and the synthetic v2 messages;
# every record the suite creates (a record factory sees them all, whatever the handlers) is
# checked, message and args, when the test that made it ends; a hit fails that test.

_LOG_RECORDS: list[logging.LogRecord] = []
_NHS_TEST_RANGE = r"\b999[ -]?\d{3}[ -]?\d{4}\b"  # every synthetic NHS number is in 999...


def _patients(path: Path) -> Iterator[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.suffix == ".ndjson" else [path.read_text()]
    for line in filter(str.strip, lines):
        resource = json.loads(line)
        for entry in [resource, *(e.get("resource", {}) for e in resource.get("entry", []))]:
            if entry.get("resourceType") == "Patient":
                yield entry


def _fixture_identities() -> set[str]:
    """The names, birth dates and identifiers of every child the fixtures and test messages use."""
    found: set[str] = set()
    for path in [*SCENARIOS.rglob("*.json"), *SCENARIOS.rglob("*.ndjson")]:
        for patient in _patients(path):
            found.update(i["value"] for i in patient.get("identifier", []) if "value" in i)
            for name in patient.get("name", []):
                found.update([name.get("family", ""), *name.get("given", [])])
            if birth := patient.get("birthDate"):
                found.update([birth, birth.replace("-", "")])
    v2_text = "\n".join(p.read_text() for p in [*SCENARIOS.rglob("*.hl7"), *(ROOT / "tests").rglob("*.py")])
    for pid in re.findall(r"PID\|[^\r\n\"]*", v2_text):
        fields = pid.split("|")
        found.update(fields[5].split("^") if len(fields) > 5 else [])  # PID-5 patient name
        found.update(re.findall(r"\d{8}", fields[7]) if len(fields) > 7 else [])  # PID-7 birth
    found.update(re.findall(r"birth\w*\s*[=:]\s*\"(\d{8}|\d{4}-\d{2}-\d{2})\"", v2_text))
    found.update(f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in list(found) if re.fullmatch(r"\d{8}", d))
    words = {w for s in found for w in re.split(r"\\+[A-Za-z]?\\*", s)}  # HL7 and Python escapes
    return {w for w in words if len(w) >= 3 and "{" not in w}


@functools.cache
def _sensitive() -> re.Pattern[str]:
    words = sorted(_fixture_identities(), key=len, reverse=True)
    return re.compile("|".join([_NHS_TEST_RANGE, *(rf"(?<!\w){re.escape(w)}(?!\w)" for w in words)]))


def _leaks(records: list[logging.LogRecord]) -> list[str]:
    found = []
    for record in records:
        try:
            text = f"{record.getMessage()}\n{record.args!r}"
        except (TypeError, ValueError):  # a malformed call: still scan what it carried
            text = f"{record.msg!r}\n{record.args!r}"
        if hit := _sensitive().search(text):
            found.append(f"{record.name} {record.levelname}: {hit.group()!r} in {text[:200]!r}")
    return found


@pytest.fixture(scope="session", autouse=True)
def _record_every_log_record() -> Iterator[None]:
    """Keep every record made, at every level of the adapter's loggers, for the scan."""
    make = logging.getLogRecordFactory()

    def keep(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        _LOG_RECORDS.append(record)
        return record

    adapter = logging.getLogger("fhir_engagement")
    level = adapter.level
    adapter.setLevel(logging.DEBUG)  # DEBUG lines too: none may name a child either
    logging.setLogRecordFactory(keep)
    yield
    logging.setLogRecordFactory(make)
    adapter.setLevel(level)
    leaks = _leaks(_LOG_RECORDS)
    assert not leaks, "log records outside any test name a fixture child:\n" + "\n".join(leaks)


@pytest.fixture(autouse=True)
def _no_child_in_any_log_record() -> Iterator[None]:
    """Fails the test whose run (fixtures included) logged a fixture child's identity."""
    _LOG_RECORDS.clear()
    yield
    leaks, _LOG_RECORDS[:] = _leaks(_LOG_RECORDS), []
    if leaks:
        pytest.fail("a log record names a fixture child:\n" + "\n".join(leaks[:10]), pytrace=False)
