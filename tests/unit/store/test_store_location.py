"""What a store setting names, and that a DSN's password is never printed."""

import pytest

from fhir_engagement.store import is_postgres, shown


@pytest.mark.parametrize(("location", "url"), [
    ("fhir-engagement.sqlite3", False), (":memory:", False), ("/var/lib/x/postgresql.db", False),
    ("postgresql://u@127.0.0.1/test", True), ("postgres://127.0.0.1/test", True),
])
def test_a_url_names_a_database_and_anything_else_a_file(location: str, url: bool) -> None:
    assert is_postgres(location) is url


def test_a_password_is_never_printed() -> None:
    printed = shown("postgresql://adapter:s3cret@db.trust.nhs.uk:5432/engagement?sslmode=require")
    assert "s3cret" not in printed
    assert printed == "postgresql://adapter@db.trust.nhs.uk:5432/engagement"
    assert shown("postgresql://adapter@db/engagement") == "postgresql://adapter@db/engagement"
    assert shown("store.sqlite3") == "store.sqlite3"
