"""``fhir-engagement store migrate|status`` and a PostgreSQL store named by --store or the
environment, end to end: a real process on a real PostgreSQL schema."""

from __future__ import annotations

import json
from pathlib import Path

from fhir_engagement.store import open_store
from fhir_engagement.store.postgres import display_name
from tests.conftest import SCENARIOS, run_cli


def test_status_migrate_status_on_a_fresh_database(tmp_path: Path, pg_dsn: str) -> None:
    before = run_cli("store", "status", "--store", pg_dsn, cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert "pending migrations: 0001_initial.sql" in before.stdout
    migrate = run_cli("store", "migrate", "--store", pg_dsn, cwd=tmp_path)
    assert migrate.returncode == 0, migrate.stderr
    assert "applied: 0001_initial.sql" in migrate.stdout
    again = run_cli("store", "migrate", "--store", pg_dsn, cwd=tmp_path)
    assert "applied: none (up to date)" in again.stdout
    after = run_cli("store", "status", cwd=tmp_path, FHIR_ENGAGEMENT_STORE=pg_dsn)  # the environment
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines() == [
        f"store: {display_name(pg_dsn)} (postgresql)", "schema version: 1",
        "pending migrations: none", "inbox pending: 0", "deliveries pending: 0", "dead letters: 0"]


def test_an_unreachable_database_is_exit_2_in_one_line_without_the_password(tmp_path: Path) -> None:
    run = run_cli("store", "status", "--store", "postgresql://postgres:s3cret@127.0.0.1:1/test",
               cwd=tmp_path)
    assert run.returncode == 2
    assert "cannot reach the store postgresql://postgres@127.0.0.1:1/test" in run.stderr
    assert "s3cret" not in run.stderr + run.stdout
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_status_of_an_absent_sqlite_file_is_exit_2_and_makes_none(tmp_path: Path) -> None:
    run = run_cli("store", "status", "--store", str(tmp_path / "absent.sqlite3"), cwd=tmp_path)
    assert run.returncode == 2
    assert "no store at" in run.stderr
    assert not (tmp_path / "absent.sqlite3").exists()


def test_status_of_a_sqlite_store_counts_what_waits(tmp_path: Path) -> None:
    store = tmp_path / "state.sqlite3"
    replay = run_cli("replay", str(SCENARIOS), "--out", str(tmp_path / "b.json"), "--store",
                  str(store), "--quiet", cwd=tmp_path)
    assert replay.returncode in (0, 1), replay.stderr
    run = run_cli("store", "status", "--store", str(store), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"store: {store} (sqlite)" in run.stdout
    assert "dead letters: " in run.stdout


def test_replay_into_postgresql_then_a_rerun_writes_nothing_new(tmp_path: Path, pg_dsn: str) -> None:
    first = run_cli("replay", str(SCENARIOS), "--out", str(tmp_path / "one.json"), "--store", pg_dsn,
                 "--quiet", cwd=tmp_path)
    assert first.returncode in (0, 1), first.stderr  # 1: the scenarios hold refused records
    written = json.loads((tmp_path / "one.json").read_text())["entry"]
    assert written
    second = run_cli("replay", str(SCENARIOS), "--out", str(tmp_path / "two.json"), "--store", pg_dsn,
                  "--quiet", cwd=tmp_path)
    assert second.returncode == first.returncode, second.stderr
    assert json.loads((tmp_path / "two.json").read_text()).get("entry", []) == []
    rate = run_cli("report", "rate", "--store", pg_dsn, cwd=tmp_path)
    assert rate.returncode == 0, rate.stderr
    assert "Not-brought rate per provider per quarter" in rate.stdout


def test_a_replay_beside_a_replica_that_decides_is_refused(tmp_path: Path, pg_dsn: str) -> None:
    """One decides at a time (docs/replicas.md): a replay would count a child's events out of
    order beside a serve replica, so it waits for the lease (a failover) and then refuses."""
    replica = open_store(pg_dsn)
    try:
        assert replica.hold_lease()
        run = run_cli("replay", str(SCENARIOS), "--out", str(tmp_path / "one.json"), "--store",
                   pg_dsn, "--quiet", cwd=tmp_path)
        assert run.returncode == 2, run.stderr
        assert "another process (a serve replica or a replay) is deciding" in run.stderr
        assert not (tmp_path / "one.json").exists()
        replica.release_lease()
        run = run_cli("replay", str(SCENARIOS), "--out", str(tmp_path / "one.json"), "--store",
                   pg_dsn, "--quiet", cwd=tmp_path)
        assert run.returncode in (0, 1), run.stderr
        assert json.loads((tmp_path / "one.json").read_text())["entry"]
    finally:
        replica.close()
