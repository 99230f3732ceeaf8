"""A replay never aborts for bad input: good files mixed with poison records, as a tester runs it.

Each poison record once stopped a replay (no Bundle, the good records' outputs lost). Whatever the
readers make of it (a named rejection today, maybe a record read safely tomorrow), the replay must
carry on, write every good record's outputs, and name each rejection with its file and position.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import SCENARIOS, run_cli

GOOD = SCENARIOS / "01-single-wnb-no-status" / "bundle.json"




def _variant(tag: str, nhs: str) -> dict[str, object]:
    """The single-WNB scenario for another child: a good record but for what a test changes."""
    text = GOOD.read_text().replace("s01", tag).replace("9990001014", nhs)
    return json.loads(text)


def _appointment(bundle: dict[str, object]) -> dict[str, object]:
    return bundle["entry"][1]["resource"]  # type: ignore[index]


def _poison(folder: Path) -> dict[str, Path]:
    """One file per poison record, each about a child of its own; name -> file."""
    folder.mkdir()
    files: dict[str, Path] = {}

    year1 = _variant("py1", "9990009012")
    _appointment(year1)["start"] = "0001-01-01T00:00:00Z"
    files["year 0001 Appointment"] = folder / "year1.json"

    sup = _variant("psu", "9990009020")
    sup["entry"][0]["resource"]["identifier"][0]["value"] = "999000902\u00b2"  # type: ignore[index]
    files["superscript digit in an NHS number"] = folder / "superscript.json"

    # Nested 300 levels: read by orjson (1,024), too deep for it to write back (255).
    shallow = _variant("pds", "9990009039")
    _appointment(shallow)["extension"] = ["DEEP"]
    deep_ext = '{"url":"u","extension":[' * 300 + "{}" + "]}" * 300
    files["300-deep extension"] = folder / "deep300.json"

    for name, path in files.items():
        body = {"year 0001 Appointment": year1, "superscript digit in an NHS number": sup,
                "300-deep extension": shallow}[name]
        path.write_text(json.dumps(body).replace('"DEEP"', deep_ext))

    files["10,000-deep nested JSON"] = folder / "deep10000.json"
    files["10,000-deep nested JSON"].write_text("[" * 10_000 + "]" * 10_000)
    files["non-object JSON line"] = folder / "lines.ndjson"
    files["non-object JSON line"].write_text('"just a string"\n')
    files["SCH time 00010101"] = folder / "poison.hl7"
    files["SCH time 00010101"].write_bytes("\r".join([
        "MSH|^~\\&|PAS|RXQ|FHIR-ENGAGEMENT|HSCP|20260520100000+0100||SIU^S26^SIU_S12|POISON-1|P|2.5.1",
        "SCH|APPT-P1|APPT-P1|||||||60|MIN|^^60^00010101^00010101||||||||||||||Cancelled",
        "TQ1|||||||00010101|00010101|R",
        "PID|1||9990009047^^^NHS^NH||Test^Child||20150601|F",
        "RGS|1",
        "AIS|1||PAEDS^Paediatric outpatients^L",
    ]).encode() + b"\r")
    return files


def _ids(bundle_file: Path) -> set[str]:
    return {e["fullUrl"] for e in json.loads(bundle_file.read_text())["entry"]}


def _rejects(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rejected records:"))
    return [line.strip() for line in lines[start + 1:] if line.startswith("  ")]


def test_poison_records_are_rejected_by_name_and_every_good_output_is_written(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good"
    shutil.copytree(SCENARIOS, good)
    clean = run_cli("replay", str(good), "--out", str(tmp_path / "clean.json"), "--store", ":memory:",
                 "--quiet", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr

    poison = _poison(tmp_path / "poison")
    out = tmp_path / "mixed.json"
    mixed = run_cli("replay", str(good), str(tmp_path / "poison"), "--out", str(out), "--store",
                 str(tmp_path / "s.sqlite3"), "--quiet", cwd=tmp_path)

    assert mixed.returncode == 1, mixed.stderr
    assert "Traceback" not in mixed.stderr
    assert _ids(out) >= _ids(tmp_path / "clean.json")  # every good record's outputs
    rejects = _rejects(mixed.stderr)
    assert rejects, mixed.stderr
    for line in rejects:  # each reject is a poison record, named by its file
        assert any(line.startswith(str(path)) for path in poison.values()), line

    def named(path: Path, position: str) -> bool:
        return any(line.startswith(f"{path}{position}") for line in rejects)

    assert named(poison["year 0001 Appointment"], " entry[1].resource"), rejects
    assert named(poison["SCH time 00010101"], " message 1"), rejects
    assert named(poison["10,000-deep nested JSON"], ":1:"), rejects
    assert named(poison["non-object JSON line"], ":1: expected a JSON object"), rejects
    assert named(poison["300-deep extension"], ""), rejects


def test_rejects_are_kept_as_dead_letters_with_where(tmp_path: Path) -> None:
    poison = _poison(tmp_path / "poison")
    store = str(tmp_path / "s.sqlite3")
    run = run_cli("replay", str(tmp_path / "poison"), "--out", str(tmp_path / "o.json"),
               "--store", store, "--quiet", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    listed = run_cli("deadletter", "list", "--store", store, cwd=tmp_path)
    origins = [line.split("\t")[2] for line in listed.stdout.splitlines()]
    assert len(origins) == len(_rejects(run.stderr))
    assert any(o.startswith(str(poison["SCH time 00010101"])) for o in origins), origins
