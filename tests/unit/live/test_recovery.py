"""Gap detection on a subscription's event numbers: robust to restarts and absurd numbers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from fhir_engagement.ingest.notifications import Notice
from fhir_engagement.live.recovery import CHANNEL, Recovery
from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.store import SqliteStore


@pytest.fixture
def recovery(engine: Engine, tmp_path: Path) -> Iterator[Recovery]:
    store = SqliteStore(str(tmp_path / "r.sqlite3"))
    yield Recovery(Pipeline(engine, store, store.start_run("test")), None)
    store.close()


def _event(number: int) -> Notice:
    return Notice("event-notification", f"s#{number}", {}, "Subscription/s", (number,))


def _gaps(recovery: Recovery) -> list[tuple[int, int]]:
    rows = recovery.store.inbox_pending(100, CHANNEL)
    return [(r["since"], r["until"]) for r in (orjson.loads(raw) for _, _, raw in rows)]


def test_a_gap_asks_for_what_was_missed(recovery: Recovery) -> None:
    for number in (1, 2, 3, 6):
        recovery.track(_event(number))
    assert _gaps(recovery) == [(4, 5)]
    assert recovery.stats["event gaps"] == 1


def test_an_absurd_number_does_not_switch_gap_detection_off(recovery: Recovery) -> None:
    for number in (1, 2, 2**52, 3, 4, 7):
        recovery.track(_event(number))
    # the jump to 2**52 is one (wide) gap; the fall back to 3 is an anomaly, counted, after which
    # gaps are measured again from the sender's real numbers: 5 and 6 were missed
    assert _gaps(recovery) == [(3, 2**52 - 1), (5, 6)]
    assert recovery.stats["event numbering anomalies"] == 1


def test_a_restarted_server_is_counted_and_followed(recovery: Recovery) -> None:
    for number in (40, 41, 1, 2, 4):
        recovery.track(_event(number))
    assert _gaps(recovery) == [(3, 3)]
    assert recovery.stats["event numbering anomalies"] == 1


def test_a_re_sent_event_is_no_anomaly_but_a_new_one_with_an_old_number_is(
    recovery: Recovery,
) -> None:
    recovery.track(_event(5))
    recovery.track(_event(5), fresh=False)  # the same notification again: a duplicate
    assert recovery.stats["event numbering anomalies"] == 0
    recovery.track(_event(5), fresh=True)  # another event under number 5
    assert recovery.stats["event numbering anomalies"] == 1
