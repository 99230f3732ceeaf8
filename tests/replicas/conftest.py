"""PostgreSQL for the replica tests: a fresh schema per test (tests/postgres.py), dropped after;
the outage proxy in front of the server; a FHIR server (sekmet-fhir) of its own per test.

Every machine that runs the suite has PostgreSQL 15 on 127.0.0.1:5432 (trust auth, user
postgres; issue 14). Without it these tests fail with a message saying so, never skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.integration.conftest import FhirServer, sekmet_in
from tests.postgres import drop_schema, fresh_schema, schema_dsn
from tests.replicas.tcpproxy import TcpProxy


@dataclass(frozen=True)
class Database:
    """One throwaway schema: a DSN to it directly, or through another port (the proxy's)."""

    schema: str

    def dsn(self, port: int | None = None) -> str:
        direct = schema_dsn(self.schema)
        if port is None:
            return direct
        parts = urlsplit(direct)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"{parts.hostname}:{port}"
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))

    @property
    def server(self) -> tuple[str, int]:
        parts = urlsplit(schema_dsn(self.schema))
        return parts.hostname or "127.0.0.1", parts.port or 5432


@contextlib.contextmanager
def temp_database() -> Iterator[Database]:
    """A schema of its own; dropped after, its sessions (the replicas') ended first."""
    db = Database(fresh_schema())
    try:
        yield db
    finally:
        drop_schema(db.schema)


@pytest.fixture
def database(pg_server: str) -> Iterator[Database]:
    with temp_database() as db:
        yield db


@pytest.fixture
async def pg_proxy(database: Database) -> AsyncIterator[TcpProxy]:
    """The outage proxy in front of the PostgreSQL that ``database`` is on."""
    proxy = TcpProxy(*database.server)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@contextlib.contextmanager
def temp_fhir(workdir: Path) -> Iterator[FhirServer]:
    """A sekmet-fhir of its own: two runs write the same deterministic ids, so each run's
    writes are counted on an empty server."""
    workdir.mkdir(parents=True)
    with sekmet_in(workdir) as server:
        yield server


@pytest.fixture
def fhir(tmp_path: Path) -> Iterator[FhirServer]:
    with temp_fhir(tmp_path / "sekmet") as server:
        yield server
