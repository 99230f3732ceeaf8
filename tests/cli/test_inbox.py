"""``fhir-engagement inbox list|show|retry|drop``: a person moves what a worker could not."""

from __future__ import annotations

from pathlib import Path

from fhir_engagement.store import SqliteStore
from tests.conftest import run_cli


def _quarantined_store(path: str) -> None:
    store = SqliteStore(path)
    store.inbox_put("mllp", "PAS|RXQ", "C1", "mllp:2575", b"MSH|^~\\&|PAS|RXQ\r")
    store.inbox_put("fhir", "push", "k2", "http POST /notify", b'{"resourceType": "Bundle"}')
    store.commit()
    for _ in range(3):
        store.inbox_failed(1, "processing failed (KeyError)")
    store.inbox_set_state(1, "quarantined")
    store.commit()
    store.close()


def test_list_show_retry_and_drop(tmp_path: Path) -> None:
    store = str(tmp_path / "s.sqlite3")
    _quarantined_store(store)
    listed = run_cli("inbox", "list", "--store", store, cwd=tmp_path)
    assert listed.returncode == 0
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [(r[0], r[2], r[3], r[4], r[5]) for r in rows] == [
        ("1", "mllp", "quarantined", "3", "mllp:2575"), ("2", "fhir", "pending", "0",
                                                          "http POST /notify")]
    assert rows[0][6] == "processing failed (KeyError)"
    assert [r[7] for r in rows] == ["HL7 v2 message (type unreadable), 17 bytes",
                                    "FHIR Bundle, 26 bytes"]
    shown = run_cli("inbox", "show", "1", "--reveal", "--store", store, cwd=tmp_path)
    assert shown.stdout == "MSH|^~\\&|PAS|RXQ\n"  # text mode reads the segment's CR as a newline

    assert run_cli("inbox", "retry", "1", "--store", store, cwd=tmp_path).returncode == 0
    assert run_cli("inbox", "drop", "2", "--store", store, cwd=tmp_path).returncode == 0
    check = SqliteStore(store)
    assert [(r.id, r.state, r.attempts) for r in check.inbox_rows(("pending", "dropped"))] == [
        (1, "pending", 0), (2, "dropped", 0)]
    assert check.dead_letters() == [("http POST /notify", "dropped from the inbox by an operator",
                                     b'{"resourceType": "Bundle"}')]
    check.close()


def test_an_unknown_item_is_exit_2_with_a_message(tmp_path: Path) -> None:
    store = str(tmp_path / "s.sqlite3")
    _quarantined_store(store)
    done = run_cli("inbox", "retry", "99", "--store", store, cwd=tmp_path)
    assert done.returncode == 2
    assert "no item 99" in done.stderr
