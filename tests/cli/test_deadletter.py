"""``fhir-engagement deadletter list|show|retry``: nothing lost, and a person can send it again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fhir_engagement.store import SqliteStore


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fhir_engagement", *args], cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "error"}, capture_output=True,
                          text=True, timeout=120, check=False)


def test_list_show_and_retry_of_a_record_still_refused(tmp_path: Path) -> None:
    bad = tmp_path / "in" / "bad.ndjson"
    bad.parent.mkdir()
    bad.write_text('{"resourceType": "Appointment", "id": "a", "status": 5}\n')
    store = str(tmp_path / "s.sqlite3")
    assert _cli("replay", str(bad.parent), "--out", str(tmp_path / "o.json"), "--store", store,
                cwd=tmp_path).returncode == 1
    listed = _cli("deadletter", "list", "--store", store, cwd=tmp_path)
    assert listed.returncode == 0
    (row,) = listed.stdout.splitlines()
    letter, _, origin, reason, kind = row.split("\t")
    assert origin == f"{bad}:1 (Appointment.status)"
    assert reason == "expected a string, got a number"
    assert kind == "FHIR Appointment, 55 bytes"
    shown = _cli("deadletter", "show", letter, "--reveal", "--store", store, cwd=tmp_path)
    assert shown.stdout == '{"resourceType": "Appointment", "id": "a", "status": 5}'
    retried = _cli("deadletter", "retry", letter, "--store", store, cwd=tmp_path)
    assert retried.returncode == 1
    assert "not taken" in retried.stdout
    assert len(_cli("deadletter", "list", "--store", store, cwd=tmp_path).stdout.splitlines()) == 1


def test_retry_of_a_refused_delivery_queues_it_again(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite3")
    store = SqliteStore(path)
    store.enqueue_delivery("fe-prov-1", "nhs:9990000018", ["fe-task-1", "fe-prov-1"])
    store.commit()
    store.delivery_dead("fe-prov-1", "HTTP 400: Task.intent: bad")
    store.dead_letter("delivery fe-prov-1", "HTTP 400: Task.intent: bad", b"{}")
    store.commit()
    store.close()
    retried = _cli("deadletter", "retry", "1", "--store", path, cwd=tmp_path)
    assert retried.returncode == 0, retried.stderr
    assert "queued for the FHIR server again" in retried.stdout
    store = SqliteStore(path)
    try:
        assert store.delivery_counts() == {"pending": 1}
        assert store.dead_letter_rows() == []
    finally:
        store.close()


def test_show_needs_an_id_and_a_known_one(tmp_path: Path) -> None:
    store = str(tmp_path / "s.sqlite3")
    assert _cli("deadletter", "show", "--store", store, cwd=tmp_path).returncode == 2
    missing = _cli("deadletter", "show", "42", "--store", store, cwd=tmp_path)
    assert missing.returncode == 2
    assert "no dead letter 42" in missing.stderr
