"""Reading ahead (``Store.prefetch``, called by replay per chunk of events) never changes an
answer, on either backend: what was read ahead is what a lookup would have read, and a write
after the read-ahead wins over it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fhir_engagement.model import HistoryItem, PatientFacts
from fhir_engagement.store import Store, open_store

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    location = (str(request.getfixturevalue("pg_dsn")) if request.param == "postgresql"
                else str(tmp_path / "state.sqlite3"))
    store = open_store(location)
    store.add_patient(PatientFacts(("Patient/1", "nhs:9434765919"), "9434765919", "2019-05-01"), "c1")
    store.add_signal("c1", HistoryItem("Appointment/a1", "not-brought", T0, "paeds", None),
                     "child", "test")
    store.add_event_aliases(["RV3|Appointment|77|2026-03-02T10:00"], "Appointment/a1")
    store.commit()
    yield store
    store.close()


def _answers(db: Store) -> tuple[object, ...]:
    return (db.signals_of("Appointment/a1"), db.signals_of("Appointment/a2"),
            db.event_alias("RV3|Appointment|77|2026-03-02T10:00"), db.event_alias("RV3|x"),
            db.child_of("Patient/1"), db.child_of("Patient/9"))


def test_answers_read_ahead_are_the_answers_read_one_at_a_time(db: Store) -> None:
    alone = _answers(db)
    assert alone[0]["not-brought"].child == "c1"  # the data set is what the test thinks
    assert alone[1] == {}
    assert alone[4] is not None
    assert alone[4].birth_date == "2019-05-01"
    db.prefetch(["Appointment/a1", "Appointment/a2"],
                ["RV3|Appointment|77|2026-03-02T10:00", "RV3|x"], ["Patient/1", "Patient/9"])
    assert _answers(db) == alone


def test_a_write_after_the_read_ahead_wins(db: Store) -> None:
    db.prefetch(["Appointment/a1", "Appointment/a2"], ["RV3|y"], ["Patient/9"])
    db.add_signal("c1", HistoryItem("Appointment/a2", "not-brought", T0 + timedelta(days=9),
                                    "paeds", None), "child", "test")
    db.retract("Appointment/a1", "not-brought")
    db.add_event_aliases(["RV3|y"], "Appointment/a2")
    db.add_patient(PatientFacts(("Patient/9",), None, None), "c9")
    assert set(db.signals_of("Appointment/a2")) == {"not-brought"}
    assert db.signals_of("Appointment/a1")["not-brought"].retracted
    assert db.event_alias("RV3|y") == "Appointment/a2"
    found = db.child_of("Patient/9")
    assert found is not None
    assert found.key == "c9"


def test_a_merge_after_the_read_ahead_names_the_merged_child(db: Store) -> None:
    db.add_patient(PatientFacts(("Patient/2",), None, None), "c2")
    db.commit()
    db.prefetch(["Appointment/a1"], [], ["Patient/1"])
    db.merge_children("c1", "c2")
    assert db.signals_of("Appointment/a1")["not-brought"].child == "c2"
    found = db.child_of("Patient/1")
    assert found is not None
    assert found.key == "c2"


def test_a_signal_added_and_flushed_after_the_read_ahead_is_found(db: Store) -> None:
    """The read-ahead said Appointment/a2 has no signal; once one is added and written out of
    the buffer (the commit), the lookup must read the file again, not trust the read-ahead."""
    db.prefetch(["Appointment/a1", "Appointment/a2"], [], [])
    assert db.signals_of("Appointment/a2") == {}
    db.add_signal("c1", HistoryItem("Appointment/a2", "not-brought", T0 + timedelta(days=9),
                                    "paeds", None), "child", "test")
    db.commit()
    assert db.signals_of("Appointment/a2")["not-brought"].child == "c1"
    assert db.signals_of("Appointment/a1")["not-brought"].child == "c1"
