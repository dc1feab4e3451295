"""The serving database going away makes the run fail clearly (exit 1, a message naming the stage,
status.json recording it); the next run completes. The shared PostgreSQL server is never stopped:
the run points at a port where nothing listens, or its connections are terminated mid-load."""

from __future__ import annotations

import json

from reliability.helpers import (
    assert_ok,
    assert_same_state,
    final_state,
    terminate_backends,
    writing_backends,
)
from transforms.orchestration import ledger as ledger_mod

NOTHING_LISTENS = "postgresql+psycopg://postgres@127.0.0.1:1/healthbook"  # port 1: connection refused


def _failed_stage(run) -> str | None:
    path = run.run_dir / "status.json"
    return json.loads(path.read_text())["failed_stage"] if path.exists() else None


def test_an_unreachable_serving_database_fails_the_load_stage_clearly_and_the_next_run_completes(fresh_run):
    serving_url = fresh_run.serving_url
    fresh_run.serving_url = NOTHING_LISTENS
    failed = fresh_run.run()
    assert failed.returncode == 1
    assert "run failed in stage load" in failed.stderr
    assert "ServingDatabaseUnreachable" in failed.stderr and "password" not in failed.stderr
    assert _failed_stage(fresh_run) == "load"
    assert not (fresh_run.run_dir / "load.json").exists()

    fresh_run.serving_url = serving_url
    assert_ok(fresh_run.run())
    assert ledger_mod.imbalances(fresh_run.ledger()) == []
    assert _failed_stage(fresh_run) is None  # the repaired night no longer shows as failed


def test_connections_terminated_mid_load_fail_the_run_and_the_rerun_equals_a_clean_run(
    fresh_run, clean_state
):
    proc = fresh_run.start()
    try:
        while not writing_backends(fresh_run.serving_url):
            assert proc.poll() is None, "the run ended before load wrote anything"
        assert terminate_backends(fresh_run.serving_url) >= 1
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr[-3000:]
    assert "run failed in stage load" in stderr
    assert _failed_stage(fresh_run) == "load"

    assert_ok(fresh_run.run())
    assert_same_state(final_state(fresh_run), clean_state)
