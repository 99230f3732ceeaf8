"""``fhir-engagement letter TASK_ID`` as a person runs it: a real process on a real store file.

The PDF is checked the way a reader meets it: its first page rendered to PNG (poppler's pdftoppm)
and its text read back (pdftotext), never by looking inside our own output.
"""

from __future__ import annotations

import getpass
import shutil
import stat
import subprocess
from pathlib import Path

import orjson
import pytest

from fhir_engagement.store import SqliteStore
from tests.conftest import SCENARIOS, run_cli

CASE = SCENARIOS / "40-wnb-letter-two-children"
APPOINTMENT = "Amira was not brought to the Orthoptics appointment on Tuesday 10 March 2026 at 14:30."
REBOOK = "How to book a new time: please call the number on your appointment letter."




@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store holding scenario 40's outputs, and Amira's send-wnb-letter Task id."""
    folder = tmp_path_factory.mktemp("letter")
    store = folder / "state.sqlite3"
    run = run_cli("replay", str(CASE), "--out", str(folder / "bundle.json"), "--store", str(store),
               "--quiet", cwd=folder)
    assert run.returncode == 0, run.stderr
    bundle = orjson.loads((folder / "bundle.json").read_bytes())
    task = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"
                and e["resource"]["code"]["coding"][0]["code"] == "send-wnb-letter"
                and e["resource"]["focus"]["reference"].endswith("/s40-a2"))
    return store, task["identifier"][0]["value"]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_text_is_printed_and_the_read_is_audited(replayed: tuple[Path, str], tmp_path: Path) -> None:
    store, task = replayed
    run = run_cli("letter", task, "--store", str(store), cwd=tmp_path,
               FHIR_ENGAGEMENT_OPERATOR="Admin Clerk")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Amira was not brought to an appointment\n\nDear Sara Khan,")
    assert APPOINTMENT in run.stdout
    db = SqliteStore(str(store), exclusive=False)
    try:
        rows = [(a.who, a.action, a.detail) for a in db.accesses()]
    finally:
        db.close()
    assert (f"Admin Clerk (OS user {getpass.getuser()})", "letter", "parent letter, text") in rows


def test_the_gp_copy(replayed: tuple[Path, str], tmp_path: Path) -> None:
    store, task = replayed
    run = run_cli("letter", task, "--copy", "gp", "--store", str(store), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Copy for the GP: Amira was not brought to an appointment")
    assert "Dear Oak Lane Surgery," in run.stdout
    assert APPOINTMENT in run.stdout


def test_html_is_written_private(replayed: tuple[Path, str], tmp_path: Path) -> None:
    store, task = replayed
    out = tmp_path / "letters" / "amira.html"
    run = run_cli("letter", task, "--format", "html", "--out", str(out), "--store", str(store),
               cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert f"<p>{APPOINTMENT}</p>" in html
    assert "Amira&#39;s health matters to us" in html
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_pdf_renders_and_reads_back(replayed: tuple[Path, str], tmp_path: Path) -> None:
    store, task = replayed
    pdf = tmp_path / "amira.pdf"
    run = run_cli("letter", task, "--format", "pdf", "--out", str(pdf), "--store", str(store),
               cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert stat.S_IMODE(pdf.stat().st_mode) == 0o600
    for tool in ("pdftoppm", "pdftotext"):
        assert shutil.which(tool), f"{tool} missing: .ci/run installs Debian's poppler-utils"
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True, timeout=60)
    png = next(tmp_path.glob("page*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5_000  # a page with text on it, not a blank one
    text = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(pdf), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout
    assert APPOINTMENT in _flat(text)
    assert REBOOK in _flat(text)


def test_pdf_needs_an_out_file(replayed: tuple[Path, str], tmp_path: Path) -> None:
    store, task = replayed
    run = run_cli("letter", task, "--format", "pdf", "--store", str(store), cwd=tmp_path)
    assert run.returncode == 2
    assert "--format pdf needs --out FILE" in run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize("task", ["fe-task-00000000000000000000000000000000", "nonsense", ""])
def test_an_unknown_task_is_a_clear_message(replayed: tuple[Path, str], tmp_path: Path,
                                            task: str) -> None:
    store, _ = replayed
    run = run_cli("letter", task, "--store", str(store), cwd=tmp_path)
    assert run.returncode == 2
    assert "no letter draft for Task" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


def test_a_task_without_a_letter_is_a_clear_message(replayed: tuple[Path, str],
                                                   tmp_path: Path) -> None:
    """A review-impact Task has no letter: the same message, nothing shown, nothing audited."""
    store, _ = replayed
    db = SqliteStore(str(store), exclusive=False)
    try:
        review = next(r.id for r in db.outputs_of_kind("Task")
                      if b'"review-impact"' in r.resource)
        before = len(db.accesses())
        run = run_cli("letter", review, "--store", str(store), cwd=tmp_path)
        assert run.returncode == 2
        assert "no letter draft for Task" in run.stderr
        assert len(db.accesses()) == before
    finally:
        db.close()


def test_no_store_is_a_clear_message(tmp_path: Path) -> None:
    run = run_cli("letter", "fe-task-1", "--store", str(tmp_path / "none.sqlite3"), cwd=tmp_path)
    assert run.returncode == 2
    assert "no store at" in run.stderr
    assert "Traceback" not in run.stderr


def test_html_escapes_a_child_called_script(tmp_path: Path) -> None:
    """A hostile name in the input prints as text in the HTML page, never as markup."""
    doc = orjson.loads((CASE / "bundle.json").read_bytes())
    amira = doc["entry"][0]["resource"]
    amira["name"][0]["given"] = ["<script>alert(1)</script>"]
    amira["contact"][0]["name"] = {"text": "<img src=x onerror=alert(2)>"}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bundle.json").write_bytes(orjson.dumps(doc))
    store = tmp_path / "s.sqlite3"
    run = run_cli("replay", str(tmp_path / "in"), "--out", str(tmp_path / "b.json"), "--store",
               str(store), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    bundle = orjson.loads((tmp_path / "b.json").read_bytes())
    task = next(e["resource"]["identifier"][0]["value"] for e in bundle["entry"]
                if e["resource"]["resourceType"] == "Task"
                and e["resource"]["code"]["coding"][0]["code"] == "send-wnb-letter"
                and e["resource"]["focus"]["reference"].endswith("/s40-a2"))
    html = run_cli("letter", task, "--format", "html", "--store", str(store), cwd=tmp_path).stdout
    assert "<script>" not in html
    assert "<img" not in html
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; was not brought" in html
    assert "Dear &lt;img src=x onerror=alert(2)&gt;," in html
