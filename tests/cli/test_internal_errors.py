"""Exit 4: a failing store or a bug gives one line on screen, never a traceback; the traceback goes
to a private log file beside the store."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fhir_engagement import cli
from fhir_engagement.errors import StoreError
from fhir_engagement.store.sqlite import SqliteStore
from tests.conftest import SCENARIOS

SECRET = "9990001014"  # an NHS number in the failure's message: it must not reach the screen


def _explode(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError(f"a bug met patient {SECRET}")


def _replay_args(tmp_path: Path, store: str) -> list[str]:
    return ["replay", str(SCENARIOS / "01-single-wnb-no-status"), "--out",
            str(tmp_path / "o.json"), "--store", store, "--quiet"]


def test_an_internal_error_exits_4_with_one_line_and_the_traceback_in_a_0600_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cli, "replay", _explode)
    folder = tmp_path / "state"
    status = cli.main(_replay_args(tmp_path, str(folder / "s.sqlite3")))
    captured = capsys.readouterr()
    assert status == cli.EXIT_INTERNAL == 4
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1, captured.err
    assert "Traceback" not in captured.err
    assert SECRET not in captured.err
    logs = list(folder.glob("fhir-engagement-error-*.log"))
    assert len(logs) == 1
    assert captured.err == (f"fhir-engagement: internal error: RuntimeError; details in "
                            f"{logs[0]}\n")
    assert stat.S_IMODE(logs[0].stat().st_mode) == 0o600
    text = logs[0].read_text()
    assert text.startswith("Traceback (most recent call last):")
    assert "_explode" in text
    assert f"RuntimeError: a bug met patient {SECRET}" in text


def test_with_a_memory_store_the_log_goes_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cli, "replay", _explode)
    monkeypatch.chdir(tmp_path)
    assert cli.main(_replay_args(tmp_path, ":memory:")) == 4
    logs = list(tmp_path.glob("fhir-engagement-error-*.log"))
    assert len(logs) == 1
    assert str(logs[0]) in capsys.readouterr().err


def test_a_log_that_cannot_be_written_is_said_in_the_same_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cli, "replay", _explode)
    monkeypatch.setattr(cli, "_log_folder", lambda _args: tmp_path / "no-such-folder")
    assert cli.main(_replay_args(tmp_path, ":memory:")) == 4
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "internal error: RuntimeError; no log written" in err


def test_a_store_failure_mid_replay_exits_4_and_says_the_inputs_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def disk_full(_self: SqliteStore) -> None:
        raise StoreError("database or disk is full")

    monkeypatch.setattr(SqliteStore, "commit", disk_full)
    status = cli.main(_replay_args(tmp_path, str(tmp_path / "s.sqlite3")))
    err = capsys.readouterr().err
    assert status == 4
    assert err.startswith("fhir-engagement: store error: database or disk is full (nothing was "
                          "acknowledged: the inputs are still on disk")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o.json").exists()
