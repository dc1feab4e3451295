"""Two runs of the same night started at once: one refuses clearly (exit 3, "in progress"), the other
completes, and the state is the clean run's (never corrupted)."""

from __future__ import annotations

from reliability.helpers import assert_same_state, final_state


def test_two_runs_of_one_night_at_once_one_refuses_and_the_other_completes(fresh_run, clean_state):
    first, second = fresh_run.start(), fresh_run.start()
    results = []
    for proc in (first, second):
        stdout, stderr = proc.communicate(timeout=600)
        results.append((proc.returncode, stderr))
    codes = sorted(code for code, _ in results)
    assert codes == [0, 3], [err[-2000:] for _, err in results]
    refused = next(err for code, err in results if code == 3)
    assert "in progress" in refused
    assert_same_state(final_state(fresh_run), clean_state)
