"""The start-up warm-up decides its synthetic no-shows on a store of its own: the served store,
the served pipeline's counts and the FHIR server see nothing of it."""

from __future__ import annotations

from pathlib import Path

from fhir_engagement.config import Settings
from fhir_engagement.live.app import PIPELINE, build_app
from fhir_engagement.live.warmup import warm
from fhir_engagement.pipeline import Engine
from fhir_engagement.store import SqliteStore
from tests.conftest import MAPPINGS, serve_app


def test_the_warm_up_decides_every_output_kind(engine: Engine) -> None:
    assert warm(engine) == 3  # three decisions: Tasks, the Flag, Provenance went through


async def test_serve_starts_warm_and_its_store_holds_none_of_it(
    engine: Engine, tmp_path: Path
) -> None:
    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "w.sqlite3"))
    store = SqliteStore(settings.store)
    app = build_app(settings, engine, store)
    async with serve_app(app):
        assert app[PIPELINE].queued == 0
        assert not app[PIPELINE].stats["events"]
        for kind in ("Flag", "Task", "Provenance"):
            assert store.outputs_of_kind(kind) == []
        assert store.delivery_counts().get("pending", 0) == 0
    store.close()
