"""Kept items are listed masked; their raw content only with ``--reveal``, audited first."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from fhir_engagement.store import SqliteStore
from tests.conftest import free_port, run_cli

NHS, NAME, BORN = "9434765919", "SMITHSON", "20160505"
RAW_V2 = (f"MSH|^~\\&|PAS|RXQ|ENG|RXQ|202501011000||ADT^A01|C9|P|2.5\r"
          f"PID|||{NHS}^^^NHS||{NAME}^JOHN||{BORN}\r").encode()
RAW_FHIR = (f'{{"resourceType": "Patient", "identifier": [{{"value": "{NHS}"}}], '
            f'"name": [{{"family": "{NAME}"}}], "birthDate": "2016-05-05"}}').encode()
# What readers write: a reason quoting the value refused, an origin naming a file.
REASON = f"PID-7: not a date: '{BORN}x' (patient {NHS} born 2016-05-05, {NAME[:3]} 05/05/2016)"




@pytest.fixture
def store(tmp_path: Path) -> str:
    path = str(tmp_path / "s.sqlite3")
    kept = SqliteStore(path)
    kept.dead_letter(f"/in/{NHS}.hl7:1 (PID-7)", REASON, RAW_V2)
    kept.dead_letter("http POST /notify", "expected a string, got a number", RAW_FHIR)
    kept.inbox_put("mllp", "PAS|RXQ", "C9", "mllp:2575", RAW_V2)
    kept.commit()
    kept.inbox_failed(1, REASON)
    kept.close()
    return path


def _accesses(path: str) -> list[tuple[str, str]]:
    kept = SqliteStore(path)
    try:
        return [(a.who, a.action) for a in kept.accesses()]
    finally:
        kept.close()


def _no_identifiers(text: str) -> None:
    for value in (NHS, NAME, BORN, "2016-05-05", "05/05/2016", "943 476 5919"):
        assert value not in text


@pytest.mark.parametrize("command", ["deadletter", "inbox"])
def test_list_and_show_print_no_identifier(store: str, tmp_path: Path, command: str) -> None:
    listed = run_cli(command, "list", "--store", store, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    _no_identifiers(listed.stdout)
    assert f"HL7 v2 ADT^A01, {len(RAW_V2)} bytes" in listed.stdout
    assert "not a date: <9 chars> (patient <number> born <date>" in listed.stdout
    shown = run_cli(command, "show", "1", "--store", store, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    _no_identifiers(shown.stdout)
    assert "--reveal" in shown.stdout
    assert _accesses(store) == []  # nothing identifiable was shown


def test_a_fhir_dead_letter_is_previewed_by_type_only(store: str, tmp_path: Path) -> None:
    listed = run_cli("deadletter", "list", "--store", store, cwd=tmp_path)
    assert listed.stdout.splitlines()[1].endswith(f"\tFHIR Patient, {len(RAW_FHIR)} bytes")


@pytest.mark.parametrize("command", ["deadletter", "inbox"])
def test_reveal_prints_the_raw_content_and_is_audited_as_the_operator(
    store: str, tmp_path: Path, command: str
) -> None:
    shown = run_cli(command, "show", "1", "--reveal", "--store", store, cwd=tmp_path,
                 FHIR_ENGAGEMENT_OPERATOR="nurse.a@trust")
    assert shown.returncode == 0, shown.stderr
    assert NHS in shown.stdout
    assert NAME in shown.stdout
    assert _accesses(store) == [(f"nurse.a@trust (OS user {getpass.getuser()})",
                                 f"{command} reveal")]
    again = run_cli(command, "show", "1", "--reveal", "--store", store, cwd=tmp_path)
    assert again.returncode == 0
    assert _accesses(store)[1] == (getpass.getuser(), f"{command} reveal")


def test_reveal_with_an_unreachable_fhir_server_says_so_and_still_audits(
    store: str, tmp_path: Path
) -> None:
    shown = run_cli("deadletter", "show", "2", "--reveal", "--store", store, cwd=tmp_path,
                 FHIR_ENGAGEMENT_FHIR_BASE=f"http://127.0.0.1:{free_port()}/fhir",
                 FHIR_ENGAGEMENT_DELIVER_TIMEOUT="5")
    assert shown.returncode == 0, shown.stderr
    assert "AuditEvent of this read was not written to the FHIR server" in shown.stderr
    assert "local audit table only" in shown.stderr
    assert len(_accesses(store)) == 1
    assert NHS in shown.stdout
