"""The audit HMAC key: where it lives (outside the store) and how an older store's key moves out.

The audit table and the logs name a child only as HMAC(key, child). Kept in the same database,
the key would travel with every copy of it (a backup, a file sent for debugging) and the hashes
would be reversed by trying every NHS number. So the key comes from the environment
(``FHIR_ENGAGEMENT_AUDIT_KEY``, hex) or from a key file (``audit_key_file``; by default
``<store>.keys/audit.key``), made 0600 in a 0700 folder when missing. A store written by an
earlier version still holds its key in ``meta``: it is copied to the new file (so old audit rows
still verify), then removed from the store.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Protocol

from fhir_engagement.config import Settings
from fhir_engagement.errors import ConfigError
from fhir_engagement.store import is_postgres
from fhir_engagement.store.base import Audit, Transactional

__all__ = ["audit_key", "audit_key_path"]

_KEY_BYTES = 32


class _KeyedStore(Audit, Transactional, Protocol):
    """What the key needs of a store: its legacy key, and a commit to forget it."""


def audit_key_path(settings: Settings) -> Path | None:
    """The key file's path: the setting, else beside the store (None for ``:memory:``).

    Raises:
        ConfigError: a PostgreSQL store, which has no file to keep it beside (and replicas on
            several hosts must share one key, or their log hashes would not match).
    """
    if settings.audit_key_file is not None:
        return settings.audit_key_file
    if settings.store == ":memory:":
        return None
    if is_postgres(settings.store):
        raise ConfigError("settings", "audit_key_file", "a PostgreSQL store needs the audit key "
                          "from FHIR_ENGAGEMENT_AUDIT_KEY or audit_key_file, the same for every "
                          "replica")
    store = Path(settings.store)
    return store.with_name(f"{store.name}.keys") / "audit.key"


def audit_key(settings: Settings, store: _KeyedStore) -> bytes:
    """The key, from the environment, the key file, or (once) the store's old copy.

    Raises:
        ConfigError: the key file cannot be read or written, holds no key, or holds a key other
            than the one the store still has (its old audit rows would stop verifying).
    """
    legacy = store.legacy_audit_key()
    if settings.audit_key:
        key = bytes.fromhex(settings.audit_key)
        _settle(store, legacy, key, "FHIR_ENGAGEMENT_AUDIT_KEY")
        return key
    path = audit_key_path(settings)
    if path is None:  # a throwaway store: a throwaway key
        return legacy or secrets.token_bytes(_KEY_BYTES)
    if path.exists():
        key = _read(path)
        _settle(store, legacy, key, str(path))
        return key
    key = legacy or secrets.token_bytes(_KEY_BYTES)
    _write(path, key)
    _settle(store, legacy, key, str(path))
    return key


def _settle(store: _KeyedStore, legacy: bytes | None, key: bytes, where: str) -> None:
    """Forget the store's old copy once the key is safe elsewhere; refuse a different key."""
    if legacy is None:
        return
    if legacy != key:
        raise ConfigError(where, "audit key", "differs from the audit key this store still holds "
                          "(made by an earlier version): remove this key (file or variable) once, "
                          "so the store's key is moved out to the key file")
    store.forget_legacy_audit_key()
    store.commit()


def _read(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "audit_key_file", f"cannot read the audit key: {exc}") from exc
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < _KEY_BYTES // 2:
        raise ConfigError(str(path), "audit_key_file", "holds no audit key (hex, 16 bytes or more)")
    return key


def _write(path: Path, key: bytes) -> None:
    """Create the file 0600 in a 0700 folder, durably, never over an existing one."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(key.hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            if path.exists() and path.stat().st_size == 0:
                path.unlink()
        raise ConfigError(str(path), "audit_key_file",
                          f"cannot write the audit key: {exc.strerror or exc}") from exc
