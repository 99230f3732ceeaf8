"""The store's files are the owner's alone: another local user reads no NHS number or birth date."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_engagement.model import PatientFacts
from fhir_engagement.store import SqliteStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def lax_umask() -> Iterator[None]:
    """The usual 022, under which a file is made 0644: the store must not rely on the caller's."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.mark.usefixtures("lax_umask")
def test_the_store_wal_shm_and_lock_are_0600_in_a_0700_folder(tmp_path: Path) -> None:
    location = tmp_path / "made" / "by" / "adapter" / "s.sqlite3"
    store = SqliteStore(str(location))
    try:
        store.add_patient(PatientFacts(aliases=("nhs:9990001073",), nhs_number="9990001073",
                                       birth_date="2015-05-05"), "nhs:9990001073")
        store.commit()  # a write: the WAL holds data now
        files = [location, *(Path(f"{location}{end}") for end in ("-wal", "-shm", ".lock"))]
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        for folder in (location.parent, location.parent.parent, location.parent.parent.parent):
            assert _mode(folder) == 0o700
        assert os.umask(0o022) == 0o022  # the process's umask is left as it was
    finally:
        store.close()


@pytest.mark.usefixtures("lax_umask")
def test_a_store_left_readable_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    location = tmp_path / "s.sqlite3"
    folder_mode = _mode(tmp_path)
    SqliteStore(str(location)).close()
    location.chmod(0o644)
    Path(f"{location}.lock").chmod(0o644)
    store = SqliteStore(str(location))
    store.close()
    assert (_mode(location), _mode(Path(f"{location}.lock"))) == (0o600, 0o600)
    assert _mode(tmp_path) == folder_mode  # a folder the adapter did not make is not its to change
