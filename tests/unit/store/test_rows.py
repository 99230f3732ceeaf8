"""store/rows.py: stored times read back exactly, and the lookup caches bounded, oldest first."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from fhir_engagement.store import rows
from fhir_engagement.store.rows import from_text, remember, to_text


def test_every_stored_time_reads_back_as_the_moment_written() -> None:
    rng = random.Random(7)
    start = datetime(1990, 1, 1, tzinfo=UTC)
    moments = [start + timedelta(microseconds=rng.randrange(10**15)) for _ in range(2000)]
    moments += [datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)]
    for moment in moments:
        back = from_text(to_text(moment))
        assert back == moment
        assert back.tzinfo is UTC
        assert back == datetime.strptime(to_text(moment), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-01-01T00:00:00Z", "2026-01-01 00:00:00.000000Z",
                                  "2026-13-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000+"])
def test_a_time_not_in_the_stored_form_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"does not match format|month"):
        from_text(text)


def test_remember_keeps_at_most_lookups_and_drops_the_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rows, "LOOKUPS", 16)
    answers: dict[str, object] = {}
    for n in range(100):
        remember(answers, f"k{n}", n)
        assert len(answers) <= 16
    assert "k99" in answers
    assert "k0" not in answers
    kept = [int(k[1:]) for k in answers]
    assert kept == sorted(kept)
    assert kept[-1] == 99
