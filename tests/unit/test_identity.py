"""One child across sources by NHS number; never two children merged (rules.md s.7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_engagement.errors import IdentityConflictError
from fhir_engagement.identity import identify, nhs_of
from fhir_engagement.model import PatientFacts
from fhir_engagement.store import SqliteStore

A, B = "9990001073", "9434765919"  # both pass the modulus-11 check


@pytest.fixture
def db(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(str(tmp_path / "id.sqlite3"))
    yield store
    store.close()


def test_patient_1_at_two_trusts_is_two_children(db: SqliteStore) -> None:
    first = identify(db, PatientFacts(("Patient/1@trust-a", f"nhs:{A}"), A, None))
    second = identify(db, PatientFacts(("Patient/1@trust-b", f"nhs:{B}"), B, None))
    assert first != second
    assert db.child_of("Patient/1@trust-a").key == f"nhs:{A}"  # type: ignore[union-attr]
    assert db.child_of("Patient/1@trust-b").key == f"nhs:{B}"  # type: ignore[union-attr]


def test_the_same_nhs_number_at_two_trusts_is_one_child(db: SqliteStore) -> None:
    first = identify(db, PatientFacts(("Patient/7@trust-a", f"nhs:{A}"), A, None))
    second = identify(db, PatientFacts(("Patient/A12@trust-c", f"nhs:{A}"), A, None))
    assert first == second == f"nhs:{A}"


def test_a_child_without_an_nhs_number_joins_when_one_arrives(db: SqliteStore) -> None:
    local = identify(db, PatientFacts(("Patient/9@trust-d", "id:https://d.example/mrn|55"),
                                      None, "2019-01-01"))
    assert nhs_of(db, local) is None
    joined = identify(db, PatientFacts(("Patient/9@trust-d", f"nhs:{A}"), A, None))
    assert joined == f"nhs:{A}"
    record = db.child_of("id:https://d.example/mrn|55")
    assert record is not None
    assert (record.key, record.birth_date) == (f"nhs:{A}", "2019-01-01")


def test_a_local_identifier_joins_only_within_its_system(db: SqliteStore) -> None:
    one = identify(db, PatientFacts(("id:https://a.example/mrn|1",), None, None))
    two = identify(db, PatientFacts(("id:https://b.example/mrn|1",), None, None))
    assert one != two


def test_a_record_claimed_by_a_second_nhs_number_is_a_conflict_and_not_merged(
    db: SqliteStore,
) -> None:
    identify(db, PatientFacts(("Patient/1@trust-a", f"nhs:{A}"), A, None))
    with pytest.raises(IdentityConflictError, match="another NHS number"):
        identify(db, PatientFacts(("Patient/1@trust-a", f"nhs:{B}"), B, None, "b.json"))
    assert db.child_of(f"nhs:{B}") is None
    assert db.child_of("Patient/1@trust-a").key == f"nhs:{A}"  # type: ignore[union-attr]


def test_the_key_does_not_depend_on_the_order_records_arrive(tmp_path: Path) -> None:
    records = [PatientFacts(("Patient/3@trust-e", "id:https://e.example/mrn|9"), None, None),
               PatientFacts(("id:https://e.example/mrn|9", "Patient/x@trust-f"), None, None)]
    keys = []
    for name, order in (("a", records), ("b", records[::-1])):
        store = SqliteStore(str(tmp_path / f"{name}.sqlite3"))
        try:
            for facts in order:
                identify(store, facts)
            keys.append(store.child_of("Patient/3@trust-e").key)  # type: ignore[union-attr]
        finally:
            store.close()
    assert keys[0] == keys[1] == "Patient/3@trust-e"
