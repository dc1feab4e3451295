"""Stages that wait for none of each other run side by side in `healthbook run` (issue #19), and a
failing stage still fails the night as it did alone: same exception, same stage recorded.

The stages here are stand-ins for `pipeline.run_stage` (each writes its process id and returns a
manifest path, or raises), so these tests judge the scheduling only; the golden run (conftest)
runs the real stages through the same waves."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from transforms.core.context import NightContext
from transforms.core.warehouse import Warehouse
from transforms.orchestration import fingerprint, pipeline
from transforms.orchestration.workers import RemoteTraceback, waves

NIGHT = dt.date(2026, 11, 26)
ALL = list(pipeline.STAGES)


class Broken(ValueError):
    pass


def fake_stages(monkeypatch, failing: tuple[str, ...] = ()) -> None:
    """run_stage replaced: each stage writes `<stage>.pid` (the process it ran in) and its manifest."""

    def run_stage(ctx, name, force=False):
        (ctx.warehouse.root / f"{name}.pid").write_text(str(os.getpid()))
        if name in failing:
            raise Broken(f"{name} broke")
        manifest = ctx.warehouse.manifest(ctx.night, name)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text("{}")
        return manifest, False

    monkeypatch.setattr(pipeline, "run_stage", run_stage)


def night(tmp_path: Path) -> NightContext:
    return NightContext(
        NIGHT, tmp_path / "extracts", tmp_path / "registry", Warehouse(tmp_path / "wh"), "sqlite://"
    )


def pids(ctx: NightContext) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in ctx.warehouse.root.glob("*.pid")}


def test_the_night_falls_in_waves_of_stages_that_wait_for_none_of_each_other():
    assert waves(ALL) == [["ingest"], ["quality", "reconcile"], ["load"], ["ledger"], ["report", "snapshot"]]
    # load waits for ingest through quality and reconcile; the snapshot waits for the ledger
    assert waves(["ingest", "load"]) == [["ingest"], ["load"]]
    assert waves(["ledger", "snapshot"]) == [["ledger"], ["snapshot"]]
    assert waves(["quality", "reconcile", "snapshot"]) == [["quality", "reconcile"], ["snapshot"]]


def test_quality_and_report_run_in_their_own_processes_beside_reconcile_and_snapshot(tmp_path, monkeypatch):
    fake_stages(monkeypatch)
    ctx = night(tmp_path)
    events = []
    summary = pipeline.run_night(ctx, on_stage=lambda name, event: events.append((name, event)))
    ran = pids(ctx)
    me = os.getpid()
    assert {name for name, pid in ran.items() if pid != me} == {"quality", "report"}
    assert ran["quality"] != ran["report"]  # a worker per stage
    assert [t.stage for t in summary.stages] == ALL
    assert events[:4] == [
        ("ingest", "start"),
        ("ingest", "done"),
        ("quality", "start"),
        ("reconcile", "start"),
    ]
    assert sorted(events) == sorted([(name, e) for name in ALL for e in ("start", "done")])


def test_one_after_the_other_every_stage_runs_in_this_process(tmp_path, monkeypatch):
    fake_stages(monkeypatch)
    ctx = night(tmp_path)
    pipeline.run_night(ctx, side_by_side=False)
    assert set(pids(ctx).values()) == {os.getpid()}


def test_the_operator_s_setting_turns_side_by_side_off(tmp_path, monkeypatch):
    from transforms.core.settings import Settings

    fake_stages(monkeypatch)
    settings = Settings.resolve(environ={"HEALTHBOOK_RUN_SIDE_BY_SIDE": "off"})
    ctx = NightContext(
        NIGHT, tmp_path / "extracts", tmp_path / "registry", Warehouse(tmp_path / "wh"), "sqlite://", settings
    )
    pipeline.run_night(ctx)
    assert set(pids(ctx).values()) == {os.getpid()}
    with pytest.raises(ValueError, match="HEALTHBOOK_RUN_SIDE_BY_SIDE must be"):
        Settings.resolve(environ={"HEALTHBOOK_RUN_SIDE_BY_SIDE": "sometimes"})


def test_a_stage_failing_in_its_worker_fails_the_night_with_its_own_exception(tmp_path, monkeypatch):
    fake_stages(monkeypatch, failing=("quality",))
    ctx = night(tmp_path)
    events = []
    with pytest.raises(Broken, match="quality broke") as raised:
        pipeline.run_night(ctx, on_stage=lambda name, event: events.append((name, event)))
    assert isinstance(raised.value.__cause__, RemoteTraceback)  # the worker's traceback
    assert "quality broke" in str(raised.value.__cause__)
    status = json.loads(ctx.warehouse.status(NIGHT).read_text())
    assert status["failed_stage"] == "quality"
    assert json.loads(ctx.warehouse.ledger(NIGHT).read_text())["run"]["failed_stage"] == "quality"
    # reconcile, beside it, finished; nothing after the wave started
    assert set(pids(ctx)) == {"ingest", "quality", "reconcile"}
    assert events[-2:] == [("reconcile", "done"), ("quality", "failed")]


def test_when_both_stages_of_a_wave_fail_the_earlier_one_in_the_night_fails_it(tmp_path, monkeypatch):
    fake_stages(monkeypatch, failing=("report", "snapshot"))
    ctx = night(tmp_path)
    with pytest.raises(Broken, match="report broke"):
        pipeline.run_night(ctx)
    assert json.loads(ctx.warehouse.status(NIGHT).read_text())["failed_stage"] == "report"


def test_a_failure_before_a_wave_starts_none_of_its_stages(tmp_path, monkeypatch):
    fake_stages(monkeypatch, failing=("ingest",))
    ctx = night(tmp_path)
    with pytest.raises(Broken, match="ingest broke"):
        pipeline.run_night(ctx)
    assert set(pids(ctx)) == {"ingest"}
    assert json.loads(ctx.warehouse.status(NIGHT).read_text())["failed_stage"] == "ingest"


def test_a_stage_with_a_record_likely_skipped_runs_here_not_in_a_worker(tmp_path, monkeypatch):
    fake_stages(monkeypatch)
    ctx = night(tmp_path)
    for name in ("quality", "report"):
        record = fingerprint.record_path(ctx, name)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("{}")
    pipeline.run_night(ctx)
    assert set(pids(ctx).values()) == {os.getpid()}
    pipeline.run_night(ctx, force=True)  # forced: every stage runs, so it is forked again
    assert {name for name, pid in pids(ctx).items() if pid != os.getpid()} == {"quality", "report"}
