"""Both stores (sqlite.py, postgres.py) cache child_of and event_alias answers: every write that
changes an answer must be seen by the next lookup, before and after the write buffer is flushed,
and a rollback must forget what it undid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_engagement.model import PatientFacts
from fhir_engagement.store import Store, open_store, rows

NHS = "9434765919"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    location = (str(request.getfixturevalue("pg_dsn")) if request.param == "postgresql"
                else str(tmp_path / "state.sqlite3"))
    store = open_store(location)
    yield store
    store.close()


def test_a_child_unknown_then_filed_is_found(db: Store) -> None:
    assert db.child_of("Patient/p1") is None  # the miss is remembered ...
    db.add_patient(PatientFacts(("Patient/p1",), NHS, None), f"nhs:{NHS}")
    found = db.child_of("Patient/p1")  # ... and forgotten when the child is filed
    assert found is not None
    assert found.key == f"nhs:{NHS}"
    db.commit()  # flushed: the answer now comes from the file, and is the same
    assert db.child_of("Patient/p1") == found


def test_a_birth_date_learnt_later_is_seen(db: Store) -> None:
    db.add_patient(PatientFacts(("Patient/p1",), NHS, None), f"nhs:{NHS}")
    db.commit()
    first = db.child_of("Patient/p1")
    assert first is not None
    assert first.birth_date is None
    db.add_patient(PatientFacts(("Patient/p1",), NHS, "2019-04-01"), f"nhs:{NHS}")
    later = db.child_of("Patient/p1")
    assert later is not None
    assert later.birth_date == "2019-04-01"


def test_a_merge_moves_the_cached_names(db: Store) -> None:
    db.add_patient(PatientFacts(("id:pas|123",), None, "2019-05-01"), "id:pas|123")
    db.add_patient(PatientFacts((f"nhs:{NHS}",), NHS, None), f"nhs:{NHS}")
    db.commit()
    before = db.child_of("id:pas|123")
    assert before is not None
    assert before.key == "id:pas|123"
    db.merge_children("id:pas|123", f"nhs:{NHS}")
    after = db.child_of("id:pas|123")
    assert after is not None
    assert (after.key, after.birth_date) == (f"nhs:{NHS}", "2019-05-01")


def test_a_rollback_forgets_cached_children_and_event_aliases(db: Store) -> None:
    db.add_patient(PatientFacts(("Patient/p1",), NHS, None), f"nhs:{NHS}")
    db.add_event_aliases(["Appointment|A1|2026-01-05T10:00"], "Appointment/a")
    assert db.child_of("Patient/p1") is not None
    assert db.event_alias("Appointment|A1|2026-01-05T10:00") == "Appointment/a"
    db.rollback()  # nothing was committed
    assert db.child_of("Patient/p1") is None
    assert db.event_alias("Appointment|A1|2026-01-05T10:00") is None


def test_the_first_event_to_claim_an_alias_keeps_it(db: Store) -> None:
    alias = "RJ1|Appointment|A1|2026-01-05T10:00"
    assert db.event_alias(alias) is None  # a remembered miss ...
    db.add_event_aliases([alias], "Appointment/a")  # ... replaced by the claim
    db.commit()
    db.add_event_aliases([alias], "Appointment/b")  # a twin seen later takes nothing
    assert db.event_alias(alias) == "Appointment/a"
    db.commit()
    assert db.event_alias(alias) == "Appointment/a"


def test_the_caches_stay_bounded(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rows, "LOOKUPS", 10)  # both stores' caches keep answers through rows
    for n in range(50):
        assert db.event_alias(f"alias {n}") is None
        assert db.child_of(f"Patient/{n}") is None
    assert len(db._event_answers) <= 10  # type: ignore[attr-defined]
    assert len(db._child_answers) <= 10  # type: ignore[attr-defined]
    db.add_event_aliases(["alias 3"], "Appointment/x")  # an evicted miss is asked again
    db.commit()
    assert db.event_alias("alias 3") == "Appointment/x"
