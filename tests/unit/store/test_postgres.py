"""What only the PostgreSQL store does (store/postgres.py), on a real server: versioned migrations,
the deciding lease between replicas, recovery after a lost connection, dedupe by constraint
between sessions, and the inbox's NOTIFY."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from fhir_engagement.errors import StoreError
from fhir_engagement.store import open_store
from fhir_engagement.store.postgres import (
    INBOX_CHANNEL,
    PostgresStore,
    apply_migrations,
    display_name,
    migration_status,
    migrations,
)

_WAIT = 10.0  # seconds: generous on a 2-core machine shared with other work


@pytest.fixture
def stores(pg_dsn: str) -> Iterator[Callable[[], PostgresStore]]:
    """Opens stores on one fresh schema; all closed after the test."""
    opened: list[PostgresStore] = []

    def open_one() -> PostgresStore:
        store = PostgresStore(pg_dsn)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def _admin(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(dsn, autocommit=True)


def _until(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + _WAIT
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def _backend_pid(store: PostgresStore) -> int:
    row = store._aside("SELECT pg_backend_pid()")
    assert row is not None
    return int(row[0])


# -- migrations ------------------------------------------------------------------------------
def test_a_fresh_schema_gets_every_migration_once(pg_dsn: str) -> None:
    shipped = migrations()
    assert [m.name for m in shipped][:1] == ["0001_initial.sql"]
    assert migration_status(pg_dsn) == (0, [m.name for m in shipped], None)  # status never migrates
    assert apply_migrations(pg_dsn) == [m.name for m in shipped]
    assert apply_migrations(pg_dsn) == []  # a re-run is a no-op
    store = PostgresStore(pg_dsn)  # and so is an open of a current schema
    store.close()
    version, pending, counts = migration_status(pg_dsn)
    assert (version, pending) == (shipped[-1].version, [])
    assert counts == {"inbox pending": 0, "deliveries pending": 0, "dead letters": 0}
    with _admin(pg_dsn) as db:
        rows = db.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [v for (v,) in rows] == [m.version for m in shipped]


def test_two_processes_opening_at_once_apply_each_migration_once(pg_dsn: str) -> None:
    # Both openers are held at the migration lock (taken here first), then let go together.
    with _admin(pg_dsn) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, hashtext(current_schema()))",
                       (0x46454E4D,))
        errors: list[BaseException] = []

        def open_close() -> None:
            try:
                PostgresStore(pg_dsn).close()
            except BaseException as exc:  # reported below, on the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=open_close) for _ in range(2)]
        for thread in threads:
            thread.start()
        assert _until(lambda: holder.execute(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = %s", (0x46454E4D,)).fetchone() == (2,)), "both openers should wait"
        holder.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", (0x46454E4D,))
        for thread in threads:
            thread.join(_WAIT)
        assert errors == []
        rows = holder.execute("SELECT version, COUNT(*) FROM schema_migrations GROUP BY version "
                              "ORDER BY version").fetchall()
    assert rows == [(m.version, 1) for m in migrations()]


def test_an_unreachable_store_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://postgres:s3cret-pw@127.0.0.1:1/test")
    assert "postgresql://postgres@127.0.0.1:1/test" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


# -- the lease -------------------------------------------------------------------------------
def test_one_store_holds_the_lease_until_it_releases_or_closes(
    stores: Callable[[], PostgresStore],
) -> None:
    first, second, third = stores(), stores(), stores()
    assert first.hold_lease()
    assert first.hold_lease()  # held: still true
    assert not second.hold_lease()
    assert not third.hold_lease()
    first.release_lease()
    assert second.hold_lease()
    assert not first.hold_lease()
    second.close()  # closing the session frees it
    assert third.hold_lease()


def test_a_replica_killed_with_sigkill_loses_the_lease(
    pg_dsn: str, stores: Callable[[], PostgresStore],
) -> None:
    code = ("import sys, time\n"
            "from fhir_engagement.store.postgres import PostgresStore\n"
            "store = PostgresStore(sys.argv[1])\n"
            "print('held' if store.hold_lease() else 'not held', flush=True)\n"
            "time.sleep(60)\n")
    with subprocess.Popen([sys.executable, "-c", code, pg_dsn], stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            other = stores()
            assert not other.hold_lease()
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(_WAIT)
            assert _until(other.hold_lease), "the server should free a killed session's lease"
        finally:
            if holder.poll() is None:
                holder.kill()


def test_a_lost_connection_is_one_store_error_then_the_store_reconnects(
    pg_dsn: str, stores: Callable[[], PostgresStore],
) -> None:
    store, other = stores(), stores()
    assert store.hold_lease()
    assert store.inbox_put("mllp", "PAS|RXQ", "kept", "mllp", b"before")
    store.commit()
    assert store.inbox_put("mllp", "PAS|RXQ", "lost", "mllp", b"uncommitted")
    with _admin(pg_dsn) as db:
        db.execute("SELECT pg_terminate_backend(%s)", (_backend_pid(store),))
    with pytest.raises(StoreError, match=re.escape(display_name(pg_dsn))):
        store.inbox_depth()
    assert store.inbox_depth()[0] == 1  # connected again; the lost transaction's write is gone
    assert [raw for _, _, raw in store.inbox_pending(10)] == [b"before"]
    assert other.hold_lease()  # the server freed the lease with the session
    assert not store.hold_lease()  # and the reconnected store does not think it still holds it


def test_health_is_reachable_on_a_primary_with_no_lag(stores: Callable[[], PostgresStore]) -> None:
    health = stores().health()
    assert (health.backend, health.reachable, health.lag_seconds) == ("postgresql", True, None)


def test_health_after_a_lost_connection_is_unreachable_once_then_recovers(
    pg_dsn: str, stores: Callable[[], PostgresStore],
) -> None:
    store = stores()
    with _admin(pg_dsn) as db:
        db.execute("SELECT pg_terminate_backend(%s)", (_backend_pid(store),))
    lost = store.health()
    assert not lost.reachable
    assert display_name(pg_dsn) in lost.reason
    assert store.health().reachable


# -- dedupe between sessions, and the inbox's NOTIFY -----------------------------------------
def test_two_replicas_keeping_one_message_at_once_keep_it_once(
    stores: Callable[[], PostgresStore],
) -> None:
    first, second = stores(), stores()
    assert first.inbox_put("mllp", "PAS|RXQ", "c1", "mllp:a", b"one")  # not committed yet
    answers: list[bool] = []
    racer = threading.Thread(target=lambda: answers.append(
        second.inbox_put("mllp", "PAS|RXQ", "c1", "mllp:b", b"one again")))
    racer.start()
    racer.join(0.5)
    assert racer.is_alive()  # waits on the unique constraint: no read-then-write race
    first.commit()
    racer.join(_WAIT)
    second.commit()
    assert answers == [False]
    assert [raw for _, _, raw in first.inbox_pending(10)] == [b"one"]


def test_a_new_inbox_message_notifies_on_commit_and_a_resend_does_not(
    pg_dsn: str, stores: Callable[[], PostgresStore],
) -> None:
    store = stores()
    with _admin(pg_dsn) as listener:
        listener.execute(f"LISTEN {INBOX_CHANNEL}")
        assert store.inbox_put("mllp", "PAS|RXQ", "c1", "mllp", b"one")
        assert list(listener.notifies(timeout=0.3)) == []  # nothing before the commit
        store.commit()
        (note,) = list(listener.notifies(timeout=2.0, stop_after=1))
        assert (note.channel, note.payload) == (INBOX_CHANNEL, "mllp")
        assert not store.inbox_put("mllp", "PAS|RXQ", "c1", "mllp", b"one again")
        store.commit()
        assert list(listener.notifies(timeout=0.3)) == []
