"""Shared test fixtures: paths, the loaded engine, a store on a real SQLite file, apps on free ports.

Also two guards every test shares: a test in a module that reads ``../shared/realdata`` fails with a
message naming the folder when it is missing (never a FileNotFoundError, never a skip), and notes a
test wants the reader to see (what an oracle could not compare) are printed after the run.
"""

from __future__ import annotations

import functools
import socket
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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "state.sqlite3"))
    yield s
    s.close()


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
    "record_access"})


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
