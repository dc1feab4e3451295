"""Stages that wait for none of each other run side by side in `healthbook run` (issue #19), and a
failing stage still fails the night as it did alone: same exception, same stage recorded.

The stages here are stand-ins for `pipeline.run_stage` (each writes its process id and returns a
manifest path, or raises), so these tests judge the scheduling only; the golden run (conftest)
runs the real stages through the same waves."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from transforms.core.context import NightContext
from transforms.core.warehouse import Warehouse
from transforms.orchestration import fingerprint, pipeline, workers
from transforms.orchestration.workers import RemoteTraceback, waves

NIGHT = dt.date(2026, 11, 26)
ALL = list(pipeline.STAGES)


class Broken(ValueError):
    pass


def fake_stages(monkeypatch, failing: tuple[str, ...] = (), ingest_waits_for_warm: bool = False) -> None:
    """run_stage replaced: each stage writes `<stage>.pid` (the process it ran in) and its manifest;
    the warm-up of a stage that declares one (data_docs: importing Great Expectations) writes
    `<stage>.warm` (its process) instead. `ingest_waits_for_warm`: ingest ends only once the
    data_docs' early warm-up has run (it fails after 60 s without)."""

    def warm_up(name):
        root = Path(os.environ["HB_TEST_ROOT"])
        with open(root / f"warm_ups.{os.getpid()}", "a") as f:  # every warm-up, by process
            f.write(name + "\n")
        if workers.BY_NAME[name].warm:  # whole or not at all: ingest goes on once it exists
            tmp = root / f".{name}.warm.{os.getpid()}"
            tmp.write_text(str(os.getpid()))
            tmp.rename(root / f"{name}.warm")

    def run_stage(ctx, name, force=False):
        if name == "ingest" and ingest_waits_for_warm:
            deadline = time.monotonic() + 60
            while not (ctx.warehouse.root / "data_docs.warm").exists():
                assert time.monotonic() < deadline, "data_docs' warm-up did not run while ingest did"
                time.sleep(0.05)
        (ctx.warehouse.root / f"{name}.pid").write_text(str(os.getpid()))
        if name in failing:
            raise Broken(f"{name} broke")
        manifest = ctx.warehouse.manifest(ctx.night, name)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text("{}")
        return manifest, False

    monkeypatch.setattr(pipeline, "run_stage", run_stage)
    monkeypatch.setattr(workers, "warm_up", warm_up)


def night(tmp_path: Path, monkeypatch) -> NightContext:
    monkeypatch.setenv("HB_TEST_ROOT", str(tmp_path / "wh"))
    return NightContext(
        NIGHT, tmp_path / "extracts", tmp_path / "registry", Warehouse(tmp_path / "wh"), "sqlite://"
    )


def warmed(ctx: NightContext) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in ctx.warehouse.root.glob("*.warm")}


def pids(ctx: NightContext) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in ctx.warehouse.root.glob("*.pid")}


def test_the_night_falls_in_waves_of_stages_that_wait_for_none_of_each_other():
    assert waves(ALL) == [
        ["ingest"],
        ["quality", "reconcile"],
        ["data_docs", "feedback", "load"],
        ["ledger"],
        ["report", "snapshot"],
    ]
    # the load waits for the quality's findings, not for Great Expectations' Data Docs nor for the
    # feedback files; the report waits for both
    assert waves(["quality", "data_docs", "load"]) == [["quality"], ["data_docs", "load"]]
    assert waves(["quality", "feedback", "load", "report"]) == [["quality"], ["feedback", "load"], ["report"]]
    # load waits for ingest through quality and reconcile; the snapshot waits for the ledger
    assert waves(["ingest", "load"]) == [["ingest"], ["load"]]
    assert waves(["ledger", "snapshot"]) == [["ledger"], ["snapshot"]]
    assert waves(["quality", "reconcile", "snapshot"]) == [["quality", "reconcile"], ["snapshot"]]


def test_quality_data_docs_feedback_and_report_run_in_their_own_processes_beside_the_others(
    tmp_path, monkeypatch
):
    fake_stages(monkeypatch)
    ctx = night(tmp_path, monkeypatch)
    events = []
    summary = pipeline.run_night(ctx, on_stage=lambda name, event: events.append((name, event)))
    ran = pids(ctx)
    me = os.getpid()
    assert {name for name, pid in ran.items() if pid != me} == {"quality", "data_docs", "feedback", "report"}
    assert len({ran["quality"], ran["data_docs"], ran["feedback"], ran["report"]}) == 4  # a worker per stage
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
    ctx = night(tmp_path, monkeypatch)
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
    ctx = night(tmp_path, monkeypatch)
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
    ctx = night(tmp_path, monkeypatch)
    with pytest.raises(Broken, match="report broke"):
        pipeline.run_night(ctx)
    assert json.loads(ctx.warehouse.status(NIGHT).read_text())["failed_stage"] == "report"


def test_a_failure_before_a_wave_starts_none_of_its_stages(tmp_path, monkeypatch):
    fake_stages(monkeypatch, failing=("ingest",))
    ctx = night(tmp_path, monkeypatch)
    with pytest.raises(Broken, match="ingest broke"):
        pipeline.run_night(ctx)
    assert set(pids(ctx)) == {"ingest"}
    assert json.loads(ctx.warehouse.status(NIGHT).read_text())["failed_stage"] == "ingest"


def test_a_stage_with_a_record_likely_skipped_runs_here_not_in_a_worker(tmp_path, monkeypatch):
    fake_stages(monkeypatch)
    ctx = night(tmp_path, monkeypatch)
    for name in ("quality", "data_docs", "feedback", "report"):
        record = fingerprint.record_path(ctx, name)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("{}")
    pipeline.run_night(ctx)
    assert set(pids(ctx).values()) == {os.getpid()}
    pipeline.run_night(ctx, force=True)  # forced: every stage runs, so it is forked again
    assert {name for name, pid in pids(ctx).items() if pid != os.getpid()} == {
        "quality",
        "data_docs",
        "feedback",
        "report",
    }


def test_data_docs_worker_starts_with_the_night_and_warms_up_while_ingest_runs(tmp_path, monkeypatch):
    fake_stages(monkeypatch, ingest_waits_for_warm=True)  # ingest ends only after the warm-up ran
    ctx = night(tmp_path, monkeypatch)
    summary = pipeline.run_night(ctx)
    ran, warm = pids(ctx), warmed(ctx)
    assert warm["data_docs"] == ran["data_docs"] != os.getpid()  # the warmed worker ran the stage
    # report (last wave) is warmed up here, while quality's worker runs, and forked at its wave
    assert warm["report"] == os.getpid() != ran["report"]
    assert ran["report"] not in (os.getpid(), ran["data_docs"], ran["quality"])
    assert "quality" not in warm  # no warm-up declared: forked at its wave from this process
    assert [t.stage for t in summary.stages] == ALL
    assert multiprocessing.active_children() == []


def test_a_night_failing_before_data_docs_wave_sends_its_early_worker_away(tmp_path, monkeypatch):
    fake_stages(monkeypatch, failing=("ingest",), ingest_waits_for_warm=True)
    ctx = night(tmp_path, monkeypatch)
    with pytest.raises(Broken, match="ingest broke"):
        pipeline.run_night(ctx)
    assert set(warmed(ctx)) == {"data_docs"} and set(pids(ctx)) == {"ingest"}  # warmed, never ran
    assert warmed(ctx)["data_docs"] != os.getpid()
    assert multiprocessing.active_children() == []


def test_no_worker_starts_early_for_a_stage_that_runs_here(tmp_path, monkeypatch):
    fake_stages(monkeypatch)
    ctx = night(tmp_path, monkeypatch)
    record = fingerprint.record_path(ctx, "data_docs")  # a re-run: data_docs has its record
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("{}")
    pipeline.run_night(ctx)
    # no early worker: warmed up here while quality's worker ran, and run here (likely skipped)
    assert warmed(ctx)["data_docs"] == pids(ctx)["data_docs"] == os.getpid()


def test_while_workers_run_this_process_warms_up_each_later_stage_once(tmp_path, monkeypatch):
    fake_stages(monkeypatch)
    ctx = night(tmp_path, monkeypatch)
    pipeline.run_night(ctx)
    here = (ctx.warehouse.root / f"warm_ups.{os.getpid()}").read_text().split()
    # after reconcile, before collecting quality: every later stage, in the night's order, once
    # (data_docs warmed up in its own early worker; the load's wave warms none again)
    assert here == ["feedback", "load", "ledger", "report", "snapshot"]
    docs = pids(ctx)["data_docs"]
    assert (ctx.warehouse.root / f"warm_ups.{docs}").read_text().split() == ["data_docs"]
