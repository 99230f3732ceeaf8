"""A real PostgreSQL for the tests: a fresh schema per test in the database ``test``, dropped after.

The server is the machine's (127.0.0.1:5432, trust auth, user postgres; FHIR_ENGAGEMENT_TEST_PG
names another). When it does not answer, the tests that need it fail with a message saying so:
never a skip, never a mock database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

__all__ = ["PG_ROOT", "fresh_schema", "pg_dsn", "pg_server", "schema_dsn"]

PG_ROOT = os.environ.get("FHIR_ENGAGEMENT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def schema_dsn(schema: str) -> str:
    """The DSN whose sessions work in ``schema`` (libpq ``options``: -c search_path=...)."""
    joiner = "&" if "?" in PG_ROOT else "?"
    return f"{PG_ROOT}{joiner}options=-csearch_path%3D{schema}&application_name={schema}"


def _admin() -> psycopg.Connection[object]:
    try:
        return psycopg.connect(PG_ROOT, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL does not answer at {PG_ROOT} (the PostgreSQL store's tests need "
                    f"it: start it, or set FHIR_ENGAGEMENT_TEST_PG): {exc}", pytrace=False)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The server's DSN, once it is known to answer."""
    _admin().close()
    return PG_ROOT


def fresh_schema() -> str:
    """A new empty schema (the caller drops it with drop_schema)."""
    name = f"fe_test_{uuid.uuid4().hex[:12]}"
    with _admin() as db:
        db.execute(f"CREATE SCHEMA {name}")
    return name


def drop_schema(name: str) -> None:
    """Drop it, first ending the sessions a failed test left open in it (their locks would make
    the drop wait forever); sessions are found by the schema's name as application_name."""
    with _admin() as db:
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE application_name = %s AND pid != pg_backend_pid()", (name,))
        db.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A DSN on an empty schema of its own, for one test."""
    name = fresh_schema()
    yield schema_dsn(name)
    drop_schema(name)
