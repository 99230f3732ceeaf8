"""The audit key lives outside the store; an older store's key is moved out, once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fhir_engagement.config import Settings
from fhir_engagement.errors import ConfigError
from fhir_engagement.store import SqliteStore
from fhir_engagement.store.auditkey import audit_key, audit_key_path

OLD = bytes(range(32))


def _settings(tmp_path: Path, **changes: object) -> Settings:
    return Settings(store=str(tmp_path / "s.sqlite3"), **changes)  # type: ignore[arg-type]


def _legacy_store(path: str, key: bytes = OLD) -> None:
    """A store as an earlier version left it: the key in meta."""
    store = SqliteStore(path)
    store.set_meta("audit_key", key.hex())
    store.commit()
    store.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_key_goes_to_a_private_file_beside_the_store_not_into_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = SqliteStore(settings.store)
    try:
        key = audit_key(settings, store)
        assert audit_key(settings, store) == key  # the same key every time
        assert store.legacy_audit_key() is None
        assert store.meta("audit_key") is None
    finally:
        store.close()
    path = audit_key_path(settings)
    assert path == tmp_path / "s.sqlite3.keys" / "audit.key"
    assert path.read_text().strip() == key.hex()
    assert (_mode(path), _mode(path.parent)) == (0o600, 0o700)
    assert key.hex().encode() not in Path(settings.store).read_bytes()


def test_an_older_stores_key_is_moved_out_and_forgotten(tmp_path: Path) -> None:
    settings = _settings(tmp_path, audit_key_file=tmp_path / "keys" / "audit.key")
    _legacy_store(settings.store)
    store = SqliteStore(settings.store)
    try:
        assert audit_key(settings, store) == OLD  # old audit rows still verify
    finally:
        store.close()
    assert (tmp_path / "keys" / "audit.key").read_text().strip() == OLD.hex()
    reopened = SqliteStore(settings.store)
    try:
        assert reopened.legacy_audit_key() is None  # committed: gone from the store
        assert audit_key(settings, reopened) == OLD  # now from the file
    finally:
        reopened.close()


def test_the_environment_key_wins_and_must_match_an_older_stores_key(tmp_path: Path) -> None:
    env_key = bytes(range(1, 33))
    settings = _settings(tmp_path, audit_key=env_key.hex())
    store = SqliteStore(settings.store)
    try:
        assert audit_key(settings, store) == env_key
        assert not audit_key_path(settings).exists()  # type: ignore[union-attr]
    finally:
        store.close()
    _legacy_store(settings.store)
    store = SqliteStore(settings.store)
    try:
        with pytest.raises(ConfigError, match=r"FHIR_ENGAGEMENT_AUDIT_KEY.*differs"):
            audit_key(settings, store)
        assert store.legacy_audit_key() == OLD  # kept until it can be moved
    finally:
        store.close()


def test_a_key_file_that_differs_from_an_older_stores_key_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path, audit_key_file=tmp_path / "audit.key")
    (tmp_path / "audit.key").write_text(bytes(range(2, 34)).hex())
    _legacy_store(settings.store)
    store = SqliteStore(settings.store)
    try:
        with pytest.raises(ConfigError, match=r"audit\.key.*differs"):
            audit_key(settings, store)
    finally:
        store.close()


def test_a_key_file_without_a_key_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "audit.key").write_text("not hex\n")
    settings = _settings(tmp_path, audit_key_file=tmp_path / "audit.key")
    store = SqliteStore(settings.store)
    try:
        with pytest.raises(ConfigError, match=r"audit\.key.*holds no audit key"):
            audit_key(settings, store)
    finally:
        store.close()


def test_an_environment_key_must_be_hex_of_16_bytes_or_more() -> None:
    with pytest.raises(ConfigError, match="audit_key"):
        Settings.load(env={"FHIR_ENGAGEMENT_AUDIT_KEY": "abc"})
    assert Settings.load(env={"FHIR_ENGAGEMENT_AUDIT_KEY": "ab" * 16}).audit_key == "ab" * 16


def test_a_postgresql_store_needs_a_shared_key_and_has_no_file_beside_it() -> None:
    # Replicas on several hosts hash children alike only with one key: none is made up per host.
    settings = Settings(store="postgresql://postgres@127.0.0.1:5432/test")
    with pytest.raises(ConfigError, match="FHIR_ENGAGEMENT_AUDIT_KEY or audit_key_file"):
        audit_key_path(settings)
    assert audit_key_path(settings.model_copy(update={"audit_key_file": Path("/k/audit.key")})) \
        == Path("/k/audit.key")
