"""The store contract on both backends, a real SQLite file and a real PostgreSQL schema: every
table's round trip, and what a commit keeps. SQLite-only behaviour is marked so."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from fhir_engagement.model import HistoryItem, PatientFacts, StatusFact
from fhir_engagement.store import SqliteStore, Store, is_postgres, open_store
from fhir_engagement.store.base import OutputRow, ServerPatient

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NHS = "9434765919"


@pytest.fixture(params=["sqlite", "postgresql"])
def path(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the store lives: a SQLite file, or a fresh PostgreSQL schema (its DSN)."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_dsn"))
    return str(tmp_path / "state.sqlite3")


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    return str(tmp_path / "state.sqlite3")


@pytest.fixture
def db(path: str) -> Iterator[Store]:
    store = open_store(path)
    yield store
    store.close()


def _reopen(store: Store, path: str) -> Store:
    store.close()
    return open_store(path)


def _committed_rows(path: str, table: str) -> int:
    """Rows of ``table`` another connection sees: what is durable."""
    if is_postgres(path):
        with psycopg.connect(path) as other:
            return int(other.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # type: ignore[index]
    with sqlite3.connect(path) as other:
        return int(other.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _item(key: str, days: int, signal: str = "not-brought") -> HistoryItem:
    return HistoryItem(key, signal, T0 + timedelta(days=days), "paeds", "Organization/o1")


# -- the inbox ------------------------------------------------------------------------------
def test_inbox_keeps_a_message_once_per_sender_and_control_id(db: Store) -> None:
    assert db.inbox_put("mllp", "PAS|RXQ", "c1", "mllp:2575", b"one")
    assert not db.inbox_put("mllp", "PAS|RXQ", "c1", "mllp:2575", b"one again")  # a re-send
    assert db.inbox_put("mllp", "LAB|RXQ", "c1", "mllp:2575", b"other sender")
    assert db.inbox_put("fhir", "push", "c1", "notify", b"other channel")
    pending = db.inbox_pending(10)
    assert [raw for _, _, raw in pending] == [b"one", b"other sender"]
    assert [raw for _, _, raw in db.inbox_pending(10, "fhir")] == [b"other channel"]
    assert db.inbox_depth()[0] == 3


def test_inbox_done_leaves_only_what_is_still_pending(db: Store) -> None:
    for i in range(3):
        db.inbox_put("mllp", "PAS|RXQ", f"c{i}", "mllp", f"m{i}".encode())
    first, second, _ = (row[0] for row in db.inbox_pending(10))
    db.inbox_done([first, second])
    assert [raw for _, _, raw in db.inbox_pending(10)] == [b"m2"]
    assert db.inbox_depth()[0] == 1
    assert not db.inbox_put("mllp", "PAS|RXQ", "c0", "mllp", b"m0")  # done is still remembered


def test_inbox_failures_count_attempts_and_quarantine_takes_an_item_out(db: Store) -> None:
    db.inbox_put("mllp", "PAS|RXQ", "c1", "mllp", b"poison")
    (item, _, _), = db.inbox_pending(1)
    assert db.inbox_failed(item, "boom") == 1
    assert db.inbox_failed(item, "boom again") == 2
    assert db.inbox_set_state(item, "quarantined")
    assert db.inbox_pending(10) == []
    (row,) = db.inbox_rows(["quarantined"])
    assert (row.attempts, row.last_error) == (2, "boom again")
    assert db.inbox_set_state(item, "pending")  # a person retries it: attempts start again
    assert db.inbox_rows(["pending"])[0].attempts == 0
    assert not db.inbox_set_state(item + 100, "dropped")


# -- dead letters ---------------------------------------------------------------------------
def test_dead_letters_round_trip_and_can_be_forgotten(db: Store, path: str) -> None:
    db.dead_letter("replay:a.json", "not FHIR", b"\x00raw bytes")
    db.dead_letter("notify", "no resourceType", b"{}")
    db.commit()
    db = _reopen(db, path)
    try:
        assert db.dead_letters() == [("replay:a.json", "not FHIR", b"\x00raw bytes"),
                                     ("notify", "no resourceType", b"{}")]
        (first, _, origin, reason), second = db.dead_letter_rows()
        assert (origin, reason) == ("replay:a.json", "not FHIR")  # listed without the raw input
        assert db.dead_letter_raw(first) == ("replay:a.json", b"\x00raw bytes")
        db.forget_dead_letter(first)
        assert [row[0] for row in db.dead_letter_rows()] == [second[0]]
        assert db.dead_letter_raw(first) is None
    finally:
        db.close()


# -- outputs --------------------------------------------------------------------------------
def test_outputs_belong_to_their_run_and_a_rewrite_replaces(db: Store) -> None:
    run1, run2 = db.start_run("first"), db.start_run("second")
    db.put_output(OutputRow("f1", "Flag", "nhs:1", b'{"v":1}'), run1)
    db.put_output(OutputRow("t1", "Task", "nhs:1", b'{"t":1}'), run1)
    db.put_output(OutputRow("f1", "Flag", "nhs:1", b'{"v":2}'), run2)  # the Flag escalated
    assert db.has_output("t1")
    assert not db.has_output("nope")
    assert db.output("f1") == OutputRow("f1", "Flag", "nhs:1", b'{"v":2}')
    assert [r.id for r in db.run_outputs(run1)] == ["t1"]
    assert [r.resource for r in db.run_outputs(run2)] == [b'{"v":2}']
    assert [r.id for r in db.outputs_of_kind("Task")] == ["t1"]


# -- the delivery queue ---------------------------------------------------------------------
def _queued(db: Store, *batches: str) -> None:
    run = db.start_run("test")
    for batch in batches:
        db.put_output(OutputRow(f"{batch}-task", "Task", "nhs:1", batch.encode()), run)
        db.enqueue_delivery(batch, "nhs:1", [f"{batch}-task"])


def test_deliveries_are_due_in_order_with_their_outputs(db: Store) -> None:
    _queued(db, "b1", "b2", "b3")
    assert db.due_deliveries(T0, 10) == [("b1", 0), ("b2", 0), ("b3", 0)]
    assert db.due_deliveries(T0, 2) == [("b1", 0), ("b2", 0)]
    assert [r.resource for r in db.delivery_outputs("b2")] == [b"b2"]
    assert db.delivery_counts() == {"pending": 3}


def test_delivery_done_retry_dead_and_again(db: Store) -> None:
    _queued(db, "ok", "later", "refused")
    now = datetime.now(UTC)
    # As the outbox does: read what is due first. (delivery_done/retry/dead do not flush, so on a
    # batch enqueued since the last flush they would change nothing.)
    assert len(db.due_deliveries(now, 10)) == 3
    db.delivery_done("ok")
    db.delivery_retry("later", now + timedelta(minutes=5), "HTTP 503")
    db.delivery_dead("refused", "HTTP 400")
    assert db.due_deliveries(now, 10) == []  # the retry waits until its time
    assert db.due_deliveries(now + timedelta(minutes=6), 10) == [("later", 1)]
    assert db.delivery_counts() == {"done": 1, "pending": 1, "dead": 1}
    assert db.delivery_again("refused")  # a person fixed the cause
    assert not db.delivery_again("ok")  # only a dead batch comes back
    assert ("refused", 1) in db.due_deliveries(now, 10)
    assert db.delivery_counts() == {"done": 1, "pending": 2}


# -- signals and history --------------------------------------------------------------------
def test_history_is_in_time_order_and_before_a_moment(db: Store) -> None:
    db.add_signal("nhs:1", _item("Appointment/b", 10), "child", "test")
    db.add_signal("nhs:1", _item("Appointment/a", 0), "child", "test")
    db.add_signal("nhs:1", _item("Appointment/c", 20), "child", "test")
    before = db.history_before("nhs:1", T0 + timedelta(days=20))
    assert [h.event_key for h in before] == ["Appointment/a", "Appointment/b"]
    assert db.history_before("nhs:2", T0 + timedelta(days=30)) == []
    assert set(db.signals_of("Appointment/b")) == {"not-brought"}
    assert db.signals_of("Appointment/unknown") == {}


def test_adult_signals_are_kept_but_are_no_child_history(db: Store) -> None:
    db.add_signal("nhs:9", _item("Appointment/x", 0), "adult", "test")
    assert db.history_before("nhs:9", T0 + timedelta(days=1)) == []
    assert db.signals_of("Appointment/x")["not-brought"].retracted is False


def test_a_retracted_signal_leaves_the_history_now_and_after_reopening(
    db: Store, path: str
) -> None:
    for key, day in (("Appointment/a", 0), ("Appointment/b", 10)):
        db.add_signal("nhs:1", _item(key, day), "child", "test")
    db.commit()
    db.retract("Appointment/a", "not-brought")
    later = T0 + timedelta(days=30)
    assert [h.event_key for h in db.history_before("nhs:1", later)] == ["Appointment/b"]
    assert db.signals_of("Appointment/a")["not-brought"].retracted
    db.commit()
    db = _reopen(db, path)
    try:
        assert [h.event_key for h in db.history_before("nhs:1", later)] == ["Appointment/b"]
    finally:
        db.close()


# -- patients and their aliases -------------------------------------------------------------
def test_every_alias_of_a_child_resolves_to_one_key(db: Store) -> None:
    db.add_patient(PatientFacts(("Patient/p1", f"nhs:{NHS}"), NHS, "2020"), f"nhs:{NHS}")
    child = db.child_of("Patient/p1")
    assert child is not None
    assert (child.key, child.birth_date) == (f"nhs:{NHS}", "2020")
    assert db.child_of(f"nhs:{NHS}") == child
    assert db.aliases_of(f"nhs:{NHS}") == {"Patient/p1", f"nhs:{NHS}"}
    assert db.child_of("Patient/unknown") is None


def test_merging_two_children_moves_names_history_and_outputs(db: Store, path: str) -> None:
    db.add_patient(PatientFacts(("id:pas|123",), None, "2019-05-01"), "id:pas|123")
    db.add_signal("id:pas|123", _item("Appointment/a1", 0), "child", "test")
    db.add_signal(f"nhs:{NHS}", _item("Appointment/a2", 1), "child", "test")
    run = db.start_run("merge")
    db.put_output(OutputRow("t1", "Task", "id:pas|123", b"{}"), run)
    db.commit()
    db.merge_children("id:pas|123", f"nhs:{NHS}")
    db.commit()
    merged = db.child_of("id:pas|123")
    assert merged is not None
    assert (merged.key, merged.birth_date) == (f"nhs:{NHS}", "2019-05-01")
    history = [h.event_key for h in db.history_before(f"nhs:{NHS}", T0 + timedelta(days=9))]
    assert history == ["Appointment/a1", "Appointment/a2"]  # both, in event-time order
    assert [r.id for r in db.child_outputs(f"nhs:{NHS}")] == ["t1"]
    db.close()
    again = open_store(path)
    try:
        assert again.child_of("id:pas|123") == merged  # durable, and the indexes agree
    finally:
        again.close()


def test_status_facts_are_found_by_any_alias_of_the_child(db: Store) -> None:
    db.add_patient(PatientFacts(("Patient/p1", f"nhs:{NHS}"), NHS, None), f"nhs:{NHS}")
    fact = StatusFact("EpisodeOfCare/e1", "Patient/p1", frozenset({"cpp"}), T0, None, True)
    db.add_status(fact)
    assert db.status_facts(f"nhs:{NHS}") == [fact]


# -- durability -----------------------------------------------------------------------------
def test_what_was_committed_survives_close_and_reopen(db: Store, path: str) -> None:
    db.add_patient(PatientFacts(("Patient/p1", f"nhs:{NHS}"), NHS, "2020-01-01"), f"nhs:{NHS}")
    db.add_event_aliases(["Appointment/a1", "urn:pas|a1"], "Appointment/a1")
    db.add_signal(f"nhs:{NHS}", _item("Appointment/a1", 0), "child", "test")
    run = db.start_run("durable")
    db.put_output(OutputRow("t1", "Task", f"nhs:{NHS}", b"{}"), run)
    db.enqueue_delivery("b1", f"nhs:{NHS}", ["t1"])
    db.set_meta("k", "v")
    db.commit()
    db = _reopen(db, path)
    try:
        child = db.child_of("Patient/p1")
        assert child is not None
        assert (child.key, child.birth_date) == (f"nhs:{NHS}", "2020-01-01")
        assert db.event_alias("urn:pas|a1") == "Appointment/a1"
        assert [h.event_key for h in db.history_before(f"nhs:{NHS}", T0 + timedelta(days=1))] == [
            "Appointment/a1"]
        assert db.has_output("t1")
        assert db.due_deliveries(T0, 10) == [("b1", 0)]
        assert db.meta("k") == "v"
    finally:
        db.close()


def test_what_was_not_committed_is_gone_after_reopening(db: Store, path: str) -> None:
    db.add_patient(PatientFacts(("Patient/p1",), None, None), "Patient/p1")
    db.add_signal("Patient/p1", _item("Appointment/a1", 0), "child", "test")
    db.put_output(OutputRow("t1", "Task", "Patient/p1", b"{}"), db.start_run("lost"))
    db.dead_letter("x", "y", b"z")
    db = _reopen(db, path)  # closed without commit: a crash
    try:
        assert db.child_of("Patient/p1") is None
        assert db.signals_of("Appointment/a1") == {}
        assert not db.has_output("t1")
        assert db.dead_letters() == []
    finally:
        db.close()


def test_rollback_forgets_the_writes_since_the_last_commit(db: Store) -> None:
    db.add_patient(PatientFacts(("Patient/kept",), None, None), "Patient/kept")
    db.commit()
    db.add_patient(PatientFacts(("Patient/half",), None, None), "Patient/half")
    db.dead_letter("x", "y", b"z")
    db.rollback()
    assert db.child_of("Patient/kept") is not None
    assert db.child_of("Patient/half") is None
    assert db.dead_letters() == []


def test_a_delivery_still_in_the_write_buffer_is_updated_not_silently_missed(db: Store) -> None:
    db.enqueue_delivery("b1", "child", [])  # buffered: not flushed to the table yet
    db.delivery_dead("b1", "refused")
    assert db.delivery_counts() == {"dead": 1}
    assert db.delivery_again("b1")
    db.delivery_done("b1")
    assert db.delivery_counts() == {"done": 1}


# -- each target server's Patient for a child's identifier -----------------------------------
SERVER_A, SERVER_B = "http://a.example/fhir", "http://b.example/fhir"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def test_a_server_patient_answer_is_kept_per_server_across_a_reopen(
    db: Store, path: str
) -> None:
    db.set_server_patient(SERVER_A, NHS_SYSTEM, NHS, ServerPatient("p1", T0))
    db.set_server_patient(SERVER_B, NHS_SYSTEM, NHS, ServerPatient(None, T0))
    db.commit()
    db = _reopen(db, path)
    try:
        assert db.server_patient(SERVER_A, NHS_SYSTEM, NHS) == ServerPatient("p1", T0)
        assert db.server_patient(SERVER_B, NHS_SYSTEM, NHS) == ServerPatient(None, T0)
        assert db.server_patient(SERVER_A, NHS_SYSTEM, "9434765870") is None
        assert db.server_patient(SERVER_A, "urn:other", NHS) is None
    finally:
        db.close()


def test_a_newer_answer_replaces_the_older_and_forgetting_removes_it(db: Store) -> None:
    db.set_server_patient(SERVER_A, NHS_SYSTEM, NHS, ServerPatient("p1", T0))
    later = ServerPatient("p2", T0 + timedelta(days=1))
    db.set_server_patient(SERVER_A, NHS_SYSTEM, NHS, later)
    assert db.server_patient(SERVER_A, NHS_SYSTEM, NHS) == later
    db.forget_server_patient(SERVER_A, NHS_SYSTEM, NHS)
    assert db.server_patient(SERVER_A, NHS_SYSTEM, NHS) is None


def test_an_uncommitted_answer_is_rolled_back(db: Store) -> None:
    db.set_server_patient(SERVER_A, NHS_SYSTEM, NHS, ServerPatient("p1", T0))
    db.rollback()
    assert db.server_patient(SERVER_A, NHS_SYSTEM, NHS) is None


def test_an_older_store_gets_the_server_patients_table_on_open(sqlite_path: str) -> None:
    """SQLite's migration: a store file made before the table existed opens and caches answers."""
    path = sqlite_path
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    old.commit()
    old.close()
    store = SqliteStore(path)
    try:
        store.set_server_patient(SERVER_A, NHS_SYSTEM, NHS, ServerPatient("p1", T0))
        store.commit()
        assert store.server_patient(SERVER_A, NHS_SYSTEM, NHS) == ServerPatient("p1", T0)
    finally:
        store.close()


# -- indexes on disk: nothing loaded at open, the write buffer flushed as it grows ---------
def test_a_reader_opened_first_sees_what_the_writer_commits_after(path: str) -> None:
    # Indexes loaded at open would leave the reader blind to this; SQLite's own are not.
    writer = open_store(path)
    reader = open_store(path, exclusive=False)
    try:
        writer.add_patient(PatientFacts(("Patient/1", f"nhs:{NHS}"), NHS, "2019-05-01"), "c1")
        writer.add_signal("c1", _item("Appointment/a", 0), "under-5", "file")
        writer.put_output(OutputRow("f1", "Flag", "c1", b'{"v":1}'), writer.start_run("r"))
        writer.commit()
        record = reader.child_of(f"nhs:{NHS}")
        assert record is not None
        assert (record.key, record.birth_date) == ("c1", "2019-05-01")
        assert reader.aliases_of("c1") == {"Patient/1", f"nhs:{NHS}", "c1"}
        assert set(reader.signals_of("Appointment/a")) == {"not-brought"}
        assert reader.has_output("f1")
    finally:
        reader.close()
        writer.close()


def test_lookups_hold_across_a_buffer_flushed_mid_transaction(db: Store, path: str) -> None:
    run = db.start_run("many")
    for n in range(10_000):  # beyond the 4,096 rows that send the buffer into the transaction
        db.add_signal(f"c{n % 50}", _item(f"Appointment/{n}", n % 300), "school-age", "file")
        db.put_output(OutputRow(f"t{n}", "Task", f"c{n % 50}", b"{}"), run)
    assert _committed_rows(path, "signals") == 0  # nothing durable before commit
    assert set(db.signals_of("Appointment/0")) == {"not-brought"}  # flushed long ago
    assert set(db.signals_of("Appointment/9999")) == {"not-brought"}  # still in the buffer
    assert db.has_output("t0")
    assert db.has_output("t9999")
    assert not db.has_output("t10000")
    # c7: events n = 7, 57, ..., 9957 (200 of them), on day n % 300; before day 10, the n with
    # n % 50 == 7 and n % 300 < 10 are n % 300 == 7, i.e. n in 7, 307, ..., 9907: 34 of them.
    assert len(db.history_before("c7", T0 + timedelta(days=10))) == 34
    db.commit()
    db = _reopen(db, path)
    assert len(db.history_before("c7", T0 + timedelta(days=10))) == 34
    assert len(db.run_outputs(run)) == 10_000
    db.close()
