"""SIGKILL in the middle of ingest, load or snapshot, then a re-run: the final state equals an
uninterrupted run of the same night in another warehouse (no duplicates, nothing lost).

The kill lands while the stage is writing: ingest once its first staged partition appears, load
while its serving transaction holds written rows, snapshot while its temporary file exists. Each
test asserts the stage had not finished (its manifest is absent) when the process died.
"""

from __future__ import annotations

import json

from reliability.helpers import NIGHT, assert_ok, assert_same_state, final_state, kill_when, writing_backends


def _killed_then_rerun(run, ready, what, stage, clean_state):
    kill_when(run.start(), ready, what)
    assert not (run.run_dir / f"{stage}.json").exists(), f"the kill landed after {stage} finished"
    assert_ok(run.run())
    assert_same_state(final_state(run), clean_state)


def test_sigkill_during_ingest_then_rerun_equals_a_clean_run(fresh_run, clean_state):
    staged = fresh_run.warehouse / "staging" / "encounters" / f"night={NIGHT.isoformat()}"
    _killed_then_rerun(fresh_run, staged.exists, "ingest wrote staging", "ingest", clean_state)


def test_sigkill_during_load_then_rerun_equals_a_clean_run(fresh_run, clean_state):
    _killed_then_rerun(
        fresh_run,
        lambda: bool(writing_backends(fresh_run.serving_url)),
        "load opened a writing transaction",
        "load",
        clean_state,
    )


def test_sigkill_during_snapshot_then_rerun_equals_a_clean_run(fresh_run, clean_state):
    # the build's private folder (transforms/safe_io.private_temp_dir), named after the night
    snapshots = fresh_run.warehouse / "snapshots"

    def building() -> bool:
        return any(snapshots.glob(f".tmp-{NIGHT.isoformat()}-*/{NIGHT.isoformat()}.duckdb"))

    _killed_then_rerun(fresh_run, building, "snapshot opened its temporary file", "snapshot", clean_state)
    assert not list(snapshots.glob(".tmp-*"))  # the killed build's folder was swept by the re-run


def test_sigkill_after_the_load_finished_but_before_its_fingerprint_reruns_the_load(fresh_run, clean_state):
    # The window: load.json is written, the record of the load (serving row, then the warehouse
    # file) is not yet. A re-run must not trust outputs it has no record of: the load runs again.
    record = fresh_run.run_dir / "fingerprints" / "load.json"
    kill_when(fresh_run.start(), (fresh_run.run_dir / "load.json").exists, "load wrote its manifest")
    assert not record.exists(), "the kill landed after the load's fingerprint was recorded"
    assert_ok(fresh_run.run())
    assert json.loads(record.read_text())["ran_because"] == "no record of a finished run"
    assert_same_state(final_state(fresh_run), clean_state)
