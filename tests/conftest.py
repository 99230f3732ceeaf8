"""Shared test fixtures: paths, the loaded engine, a store on a real SQLite file, apps on free ports.

Also two guards every test shares: a test in a module that reads ``../shared/realdata`` fails with a
message naming the folder when it is missing (never a FileNotFoundError, never a skip), and notes a
test wants the reader to see (what an oracle could not compare) are printed after the run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.errors import StoreError
from fhir_engagement.pipeline import Engine, load_engine
from fhir_engagement.store import SqliteStore, Store
from tests.postgres import pg_dsn, pg_server  # noqa: F401  (fixtures, for every test)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
SCENARIOS = FIXTURES / "scenarios"
MAPPINGS = ROOT / "mappings"
REALDATA = ROOT.parent / "shared" / "realdata"

# What the tests read from shared/realdata (its SUMMARY.md and PROVENANCE.md say where each came from).
REALDATA_CONTENTS = {
    "hl7v2": "v2 messages from python-hl7, hl7apy, renalware-nhs and Microsoft's FHIR-Converter",
    "subscriptions": "R4/R5 subscription notifications (Inferno test kit, the FHIR specification)",
    "fhir-r4-core-examples": "FHIR R4 core examples",
    "fhir-r4-core-terminology": "FHIR R4 core code systems and value sets",
    "uk-core": "UK Core profiles and examples",
    "synthea-bulk-10-patients": "a Synthea bulk export of 10 patients (NDJSON)",
}
_NOTES = pytest.StashKey[list[str]]()

# The clock's part of an output: the decision time (Task.authoredOn, Provenance.recorded) and any
# server-side meta. Everything else a replay writes is a function of its input alone.
DECISION_TIMES = {"Task": ("authoredOn",), "CommunicationRequest": ("authoredOn",),
                  "Provenance": ("recorded",)}


def without_decision_times(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` less what the clock decides, for byte-for-byte comparison of two replays."""
    drop = {"meta", *DECISION_TIMES.get(resource.get("resourceType", ""), ())}
    return {k: v for k, v in resource.items() if k not in drop}


@functools.cache
def realdata_problem() -> str | None:
    """Why ``REALDATA`` cannot be read, or None when every folder the tests read is there."""
    missing = [name for name in REALDATA_CONTENTS if not (REALDATA / name).is_dir()]
    if not missing:
        return None
    wanted = "\n".join(f"  {name}/  {what}" for name, what in REALDATA_CONTENTS.items())
    return (f"the third-party test data is missing: {REALDATA} (lacking {', '.join(missing)}). "
            f"The tests read it in place, next to the repository (../shared/realdata), and it "
            f"should hold:\n{wanted}")


def require_realdata() -> Path:
    """``REALDATA``, or fail the calling test (never skip it) naming what is missing."""
    problem = realdata_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    return REALDATA


@pytest.fixture(autouse=True, scope="module")  # module scope: before the module's own fixtures
def _realdata_is_there(request: pytest.FixtureRequest) -> None:
    """Every test in a module that imports REALDATA needs it: fail clearly before it reads it."""
    if getattr(request.module, "REALDATA", None) is REALDATA:
        require_realdata()


@pytest.fixture
def note(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Write a line the run prints at its end (under "notes"), whether the test passes or not."""
    notes = request.config.stash.setdefault(_NOTES, [])
    return lambda text: notes.append(f"{request.node.name}: {text}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    notes = config.stash.get(_NOTES, [])
    if notes:
        terminalreporter.section("notes")
        for line in notes:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def engine() -> Engine:
    return load_engine(Settings(mappings_dir=MAPPINGS))


@functools.cache
def _settings_engine(path: Path) -> Engine:
    return load_engine(Settings.load(path))


def scenario_engine(case: str, default: Engine) -> Engine:
    """The engine a scenario is replayed with: ``default``, or the settings its expected.toml
    names (``settings = "region"``: fixtures/region/settings.toml, whose sources say which are
    primary and which secondary care, rules.md s.8)."""
    named = tomllib.loads((SCENARIOS / case / "expected.toml").read_text()).get("settings")
    if named is None:
        return default
    return _settings_engine(FIXTURES / named / "settings.toml")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "state.sqlite3"))
    yield s
    s.close()


def run_cli(*args: str, cwd: Path, timeout: float = 300,
            **env: str) -> subprocess.CompletedProcess[str]:
    """``fhir-engagement ARGS`` in a process of its own, as an operator runs it (warnings are
    errors); ``env`` adds to the environment."""
    full = {**os.environ, "PYTHONWARNINGS": "error", **env}
    return subprocess.run([sys.executable, "-m", "fhir_engagement", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout, check=False)


def free_port() -> int:
    """A loopback port nobody listens on now, for a server in another process (it binds it next).

    In-process aiohttp apps never need this: ``serve_app`` binds port 0 and reads the port back.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Served:
    """An app listening on 127.0.0.1: its port and its base URL."""

    port: int
    url: str


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[Served]:
    """Run ``app`` on 127.0.0.1 port 0 for the ``async with`` block; cleaned up (on_cleanup too) after."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = int(runner.addresses[0][1])  # (host, port) of the one socket bound
        yield Served(port, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


# The Store methods that change durable state (buffered or not); test_conftest checks the names.
STORE_WRITES = frozenset({
    "start_run", "commit", "add_patient", "add_status", "add_event_aliases", "add_signal",
    "retract", "put_output", "enqueue_delivery", "delivery_done", "delivery_retry",
    "delivery_dead", "delivery_again", "subscription_seen", "set_meta", "inbox_put",
    "inbox_done", "inbox_failed", "inbox_set_state", "dead_letter", "forget_dead_letter",
    "record_access", "set_server_patient", "forget_server_patient"})


class RefusingStore:
    """A real store that, while ``refusing`` is set, raises StoreError on every write.

    What a full disk or a read-only mount looks like to the adapter, through the Store interface
    only (no reaching into the SQLite connection); reads still answer.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.refusing = False

    def __getattr__(self, name: str) -> Any:
        if self.refusing and name in STORE_WRITES:
            return _refuse(name)
        return getattr(self.store, name)


def _refuse(name: str) -> Callable[..., Any]:
    def refuse(*_args: object, **_kwargs: object) -> Any:
        raise StoreError(f"{name}: the store refuses writes (a test's full disk)")

    return refuse
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
