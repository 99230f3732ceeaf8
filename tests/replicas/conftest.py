"""PostgreSQL for the replica tests: a fresh database per test, dropped after; the outage proxy.

Every machine that runs the suite has PostgreSQL 15 on 127.0.0.1:5432 (trust auth, user
postgres; issue 14). Without it these tests fail with a message saying so, never skip.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.replicas.tcpproxy import TcpProxy

PG_HOST, PG_PORT = "127.0.0.1", 5432
ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


@dataclass(frozen=True)
class Database:
    """One throwaway database: its name, and a DSN to it directly or through a given port."""

    name: str

    def dsn(self, port: int = PG_PORT) -> str:
        return f"postgresql://postgres@{PG_HOST}:{port}/{self.name}"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL does not answer at {PG_HOST}:{PG_PORT} as user postgres "
                    f"({type(exc).__name__}): the replica tests need the machine's PostgreSQL 15 "
                    "(issue 14; .ci/run checks it)", pytrace=False)


@pytest.fixture
def database() -> Iterator[Database]:
    """A database of its own for one test (CREATE DATABASE), dropped after, sessions and all."""
    db = Database(f"fe_replicas_{secrets.token_hex(6)}")
    with _admin() as admin:
        admin.execute(f"CREATE DATABASE {db.name}")
    try:
        yield db
    finally:
        with _admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")


@pytest.fixture
async def pg_proxy() -> AsyncIterator[TcpProxy]:
    """The outage proxy in front of the machine's PostgreSQL."""
    proxy = TcpProxy(PG_HOST, PG_PORT)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
