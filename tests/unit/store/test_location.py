"""What a store setting names, and that a database URL's password is never printed."""

import pytest

from fhir_engagement.config import Settings
from fhir_engagement.errors import ConfigError
from fhir_engagement.store.auditkey import audit_key_path
from fhir_engagement.store.location import is_database_url, redacted


@pytest.mark.parametrize(("location", "url"), [
    ("fhir-engagement.sqlite3", False), (":memory:", False), ("/var/lib/x/postgresql.db", False),
    ("postgresql://u@127.0.0.1/test", True), ("postgres://127.0.0.1/test", True),
])
def test_a_url_names_a_database_and_anything_else_a_file(location: str, url: bool) -> None:
    assert is_database_url(location) is url


def test_a_password_is_never_printed() -> None:
    shown = redacted("postgresql://adapter:s3cret@db.trust.nhs.uk:5432/engagement?sslmode=require")
    assert "s3cret" not in shown
    assert shown == "postgresql://adapter:***@db.trust.nhs.uk:5432/engagement?sslmode=require"
    assert redacted("postgresql://adapter@db/engagement") == "postgresql://adapter@db/engagement"
    assert redacted("store.sqlite3") == "store.sqlite3"


def test_a_database_store_has_no_beside_for_its_audit_key() -> None:
    with pytest.raises(ConfigError, match="FHIR_ENGAGEMENT_AUDIT_KEY"):
        audit_key_path(Settings(store="postgresql://postgres@127.0.0.1/test"))


def test_a_database_store_uses_the_key_file_it_is_given(tmp_path) -> None:
    key = tmp_path / "audit.key"
    settings = Settings(store="postgresql://postgres@127.0.0.1/test", audit_key_file=key)
    assert audit_key_path(settings) == key
