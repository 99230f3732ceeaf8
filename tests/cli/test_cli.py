"""The replay command end to end, as a tester runs it: a real process, real files, a SQLite file."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

from tests.conftest import MAPPINGS, SCENARIOS, run_cli


def test_replay_fixtures_writes_one_transaction_bundle_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    # The README's demo: every fixture, the region's sources named by its settings.
    settings = SCENARIOS.parent / "region" / "settings.toml"
    run = run_cli("--config", str(settings), "replay", str(SCENARIOS.parent), "--out", str(out),
               "--store", str(tmp_path / "s.sqlite3"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    bundle = json.loads(out.read_text())
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "transaction")
    methods = {(e["resource"]["resourceType"], e["request"]["method"]) for e in bundle["entry"]}
    assert methods == {("Flag", "PUT"), ("Task", "POST"), ("CommunicationRequest", "POST"),
                       ("Provenance", "PUT")}  # the drafts of the WNB letters
    assert "neglect-referral 3" in run.stderr  # scenarios 07 and 08, and the region's child Z
    assert "rejected records: 0" in run.stderr


def test_second_run_on_the_same_store_writes_nothing_new(tmp_path: Path) -> None:
    args = ("replay", str(SCENARIOS / "07-persistent-wnb-ladder"), "--store",
            str(tmp_path / "s.sqlite3"), "--out")
    assert run_cli(*args, str(tmp_path / "1.json"), cwd=tmp_path).returncode == 0
    second = run_cli(*args, str(tmp_path / "2.json"), cwd=tmp_path)
    assert second.returncode == 0
    assert json.loads((tmp_path / "2.json").read_text())["entry"] == []
    assert "duplicates ignored: 3" in second.stderr


def test_bad_records_are_named_with_file_and_position_and_the_rest_carries_on(
    tmp_path: Path,
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "broken.json").write_text('{"resourceType": "Appointment",\n  "status": }\n')
    (inputs / "lines.ndjson").write_text(
        '{"resourceType":"Appointment","id":"x1","status":7,"start":"2026-01-05T10:00:00Z"}\n'
        "[1, 2]\n")
    shutil.copytree(SCENARIOS / "01-single-wnb-no-status", inputs / "good")
    run = run_cli("replay", str(inputs), "--out", str(tmp_path / "o.json"), "--store", ":memory:",
               cwd=tmp_path)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert f"{inputs / 'broken.json'}:2:13: not valid JSON" in run.stderr
    assert f"{inputs / 'lines.ndjson'}:1 (Appointment.status): expected a string" in run.stderr
    assert f"{inputs / 'lines.ndjson'}:2: expected a JSON object, got a list" in run.stderr
    assert "rejected records: 3" in run.stderr
    tasks = [e for e in json.loads((tmp_path / "o.json").read_text())["entry"]
             if e["resource"]["resourceType"] == "Task"]
    assert len(tasks) == 1  # the good scenario still went through


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    run = run_cli("replay", str(tmp_path), cwd=tmp_path)  # --out missing
    assert run.returncode == 2
    assert "--out" in run.stderr


def test_a_broken_mapping_stops_start_up_naming_file_and_line(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, mappings)
    path = mappings / "fhir" / "Appointment.toml"
    path.write_text(path.read_text().replace('signal = "family-cancelled"',
                                             'signal = "family-canceled"', 1))
    run = run_cli("--mappings", str(mappings), "replay", str(SCENARIOS), "--out",
               str(tmp_path / "o.json"), cwd=tmp_path)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert str(path) in run.stderr
    assert "unknown signal 'family-canceled'" in run.stderr
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1)
                if "family-canceled" in text)
    assert f"(line {line})" in run.stderr


def test_check_prints_the_loaded_mappings_and_rules_version(tmp_path: Path) -> None:
    run = run_cli("check", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # 41 [[rule]] tables in mappings/rules.toml: the 33 of rules.md s.5 and the 8 of s.8
    assert "rules: version 2026.11-default, 41 cells" in run.stdout
    assert "fhir/Appointment.toml" in run.stdout
    assert "fhir/EpisodeOfCare.toml" in run.stdout  # rules.md s.8: an episode ended
    # mappings/wording.toml: inform-gp, send-wnb-letter, safeguarding-lead-review and
    # review-discharge per setting, and the discharge review's question
    assert "Task wording: primary 4 descriptions, 1 questions; secondary 4 descriptions" \
        in run.stdout


def test_serve_on_a_port_in_use_says_so_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = run_cli("serve", "--port", str(port), "--store", str(tmp_path / "s.sqlite3"),
                   cwd=tmp_path)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"cannot listen (HTTP 127.0.0.1:{port}" in run.stderr
