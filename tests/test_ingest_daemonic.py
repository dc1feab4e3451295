"""Ingest inside a daemonic process (a Celery prefork worker's task) still completes."""

from __future__ import annotations

import datetime as dt
import multiprocessing

from transforms.core.context import make_context

GOLDEN_NIGHT = dt.date(2026, 11, 26)  # the golden_night fixture's date


def _ingest_in_child(ctx, results) -> None:
    from transforms.ingest.stage import ingest_night

    try:
        results.put(("ok", str(ingest_night(ctx))))
    except Exception as e:  # reported to the parent, which asserts on it
        results.put(("error", f"{type(e).__name__}: {e}"))


def test_ingest_in_a_daemonic_process_uses_threads_instead_of_failing(golden_night, tmp_path):
    ctx = make_context(GOLDEN_NIGHT, golden_night / "extracts", golden_night / "registry", tmp_path / "wh")
    mp = multiprocessing.get_context("fork")
    results = mp.Queue()
    child = mp.Process(target=_ingest_in_child, args=(ctx, results), daemon=True)
    child.start()
    status, detail = results.get(timeout=600)
    child.join(timeout=60)
    assert status == "ok", detail
    assert ctx.warehouse.manifest(GOLDEN_NIGHT, "ingest").exists()
