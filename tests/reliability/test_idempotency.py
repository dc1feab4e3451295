"""Running a night twice gives the same serving tables, the same staged Parquet, the same ledger
and the same snapshot (contents compared; Parquet file bytes may differ only by metadata)."""

from __future__ import annotations

from reliability.helpers import assert_ok, assert_same_state, final_state


def test_a_second_run_of_the_night_changes_nothing(clean_run, clean_state):
    assert_ok(clean_run.run())
    assert_same_state(final_state(clean_run), clean_state)
    # (a fresh warehouse fed the same night ends identical too: see test_crash_recovery.py, whose
    # re-runs are compared with this clean run of another warehouse)
