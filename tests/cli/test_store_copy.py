"""``fhir-engagement store copy``: a SQLite store moved into PostgreSQL loses nothing.

A real replay of the scenarios into a SQLite file, with live-mode state added through the store
(an inbox item waiting, a quarantined one, a dead letter, an audited read), copied by the command
line into a fresh PostgreSQL schema; then both stores are read through the same interface.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from fhir_engagement.store import open_store
from fhir_engagement.store.base import Access, Store
from tests.conftest import SCENARIOS, run_cli


def _sqlite_store(tmp_path: Path) -> Path:
    path = tmp_path / "state.sqlite3"
    run = run_cli("replay", str(SCENARIOS), "--out", str(tmp_path / "one.json"), "--store",
               str(path), "--quiet", cwd=tmp_path)
    assert run.returncode in (0, 1), run.stderr  # 1: the scenarios hold refused records
    store = open_store(str(path))
    try:
        assert store.inbox_put("mllp", "PAS|RV3", "MSG0001", "mllp:2575", b"MSH|^~\\&|waiting")
        assert store.inbox_put("fhir", "push", "n-7", "http /notify", b'{"resourceType":"X"}')
        quarantined = store.inbox_pending(10, "fhir")[0][0]
        store.inbox_failed(quarantined, "processing failed (KeyError)")
        store.inbox_set_state(quarantined, "quarantined")
        store.dead_letter("feed.hl7 (message 3)", "PID-3: no identifier", b"MSH|^~\\&|bad")
        store.record_access(Access(datetime(2026, 12, 4, 9, 30, tzinfo=UTC), "dpo@trust",
                                   "chronology", "hmac:ab12"))
        store.commit()
    finally:
        store.close()
    return path


def _everything(store: Store) -> dict[str, object]:
    """What an operator, a report or the outbox would read of a store."""
    outputs = [row for kind in ("Flag", "Task", "Provenance", "CommunicationRequest")
               for row in store.outputs_of_kind(kind)]
    children = sorted({row.child for row in outputs})
    return {
        "outputs": [(r.id, r.kind, r.child, r.resource) for r in outputs],
        "chronologies": {c: store.child_signals(c) for c in children},
        "deliveries": store.delivery_counts(),
        "inbox": [(r.id, r.channel, r.origin, r.state, r.attempts, r.last_error)
                  for r in store.inbox_rows({"pending", "quarantined", "done"})],
        "inbox raw": [store.inbox_raw(r.id) for r in store.inbox_rows({"pending", "quarantined"})],
        "dead letters": store.dead_letters(),
        "dead letter rows": store.dead_letter_rows(),
        "accesses": store.accesses(),
        "situations": store.situation_rows(),
    }


def test_a_copied_store_reads_the_same_and_a_rerun_writes_nothing_new(
    tmp_path: Path, pg_dsn: str
) -> None:
    source = _sqlite_store(tmp_path)
    copied = run_cli("store", "copy", "--from", str(source), "--to", pg_dsn, cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    assert "signals:" in copied.stdout
    assert "dead_letters: " in copied.stdout
    lite, pg = open_store(str(source), exclusive=False), open_store(pg_dsn)
    try:
        before, after = _everything(lite), _everything(pg)
        assert before["outputs"], "the scenarios decide something"
        assert after == before
        # Ids were kept and the sequences moved past them: the next item does not collide.
        assert pg.inbox_put("mllp", "PAS|RV3", "MSG0002", "mllp:2575", b"MSH|next")
        pg.commit()
        ids = [row.id for row in pg.inbox_rows({"pending"})]
        assert len(ids) == len(set(ids))
        assert max(ids) > max(r[0] for r in before["inbox"])
    finally:
        lite.close()
        pg.close()
    # The history came along: replaying the same files into PostgreSQL decides nothing again.
    rerun = run_cli("replay", str(SCENARIOS), "--out", str(tmp_path / "two.json"), "--store", pg_dsn,
                 "--quiet", cwd=tmp_path)
    assert rerun.returncode in (0, 1), rerun.stderr
    assert json.loads((tmp_path / "two.json").read_text()).get("entry", []) == []
    rates = [run_cli("report", "rate", "--store", s, cwd=tmp_path) for s in (str(source), pg_dsn)]
    assert rates[0].returncode == rates[1].returncode == 0
    assert rates[0].stdout == rates[1].stdout


def test_a_store_that_holds_rows_is_never_copied_into(tmp_path: Path, pg_dsn: str) -> None:
    source = _sqlite_store(tmp_path)
    assert run_cli("store", "copy", "--from", str(source), "--to", pg_dsn, cwd=tmp_path).returncode == 0
    again = run_cli("store", "copy", "--from", str(source), "--to", pg_dsn, cwd=tmp_path)
    assert again.returncode == 2
    assert "only fills an empty store" in again.stderr
    assert "Traceback" not in again.stderr


def test_copy_names_what_is_wrong_with_its_arguments(tmp_path: Path, pg_dsn: str) -> None:
    missing = run_cli("store", "copy", "--from", str(tmp_path / "none.sqlite3"), "--to", pg_dsn,
                   cwd=tmp_path)
    assert missing.returncode == 2
    assert "no SQLite store at" in missing.stderr
    source = _sqlite_store(tmp_path)
    into_file = run_cli("store", "copy", "--from", str(source), "--to", str(tmp_path / "x.sqlite3"),
                     cwd=tmp_path)
    assert into_file.returncode == 2
    assert "into PostgreSQL" in into_file.stderr
