"""The night's stages chained in order; `healthbook run` and the Airflow DAG call the same functions.

Each stage is `<stage>_night(ctx) -> Path` (the path of its small JSON manifest). Stages are
idempotent: re-running one replaces its outputs for the night. `run_stage` wraps a stage with its
fingerprint (transforms/orchestration/fingerprint.py): a stage whose inputs, code and outputs are unchanged since
it last finished is skipped and its manifest returned, unless the run is forced. `run_stage` also
copies the settings the stage ran with into its manifest (`record_settings`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from transforms.core.context import NightContext
from transforms.core.safe_io import current_umask, private_umask, write_text_atomic
from transforms.orchestration import fingerprint, workers
from transforms.orchestration import ledger as ledger_mod
from transforms.orchestration.ledger import ledger_night  # noqa: F401  (its home: the ledger)
from transforms.orchestration.stages import NIGHT

# Stage name -> "module:function", in the order of a night (transforms/orchestration/stages.py:
# each stage's declaration next to its code).
STAGES: dict[str, str] = {stage.name: stage.run for stage in NIGHT}
# The stages whose manifest is runs/<D>/<stage>.json (the ledger's and the report's outputs are
# documents of their own) and so records the settings the stage ran with.
MANIFEST_STAGES = ("ingest", "quality", "reconcile", "load", "snapshot")


def stage_function(name: str) -> Callable[[NightContext], Path]:
    """The function implementing one stage (imported on use: no work at import time)."""
    module, func = STAGES[name].split(":")
    return getattr(importlib.import_module(module), func)


@contextlib.contextmanager
def private_writes(ctx: NightContext) -> Iterator[None]:
    """Run a stage's writes private (issue #16 item 12): the private folders exist 0700 first, what
    the stage creates is 0700/0600 (umask 077), then the night's readable parts (runs/, quality/)
    get the modes of the caller's umask back."""
    outer = current_umask()
    with private_umask():
        ctx.warehouse.secure()
        try:
            yield
        finally:
            ctx.warehouse.share_readable(ctx.night, outer)


class NightLocked(RuntimeError):
    """Another run of the same night holds the lock."""


@contextlib.contextmanager
def night_lock(ctx: NightContext) -> Iterator[None]:
    """Hold an exclusive lock on the night: two runs of the same night never interleave."""
    run_dir = ctx.warehouse.run_dir(ctx.night)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise NightLocked(f"another run of night {ctx.night} is in progress (lock {f.name})") from e
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class StageTiming:
    stage: str
    seconds: float
    manifest: Path
    skipped: bool = False  # unchanged since it last finished: not run, its manifest reused


def _on_skip(ctx: NightContext, stage: str) -> None:
    """What a skipped stage still does: the snapshot's `latest.json` pointer (it is shared by the
    nights, so it is not one of the stage's fingerprinted outputs)."""
    if stage == "snapshot":
        from transforms.snapshot.stage import publish_latest

        pointer = ctx.warehouse.snapshot(ctx.night).with_name("latest.json")
        try:
            current = json.loads(pointer.read_text()).get("night")
        except (OSError, ValueError, AttributeError):
            current = None
        if current != ctx.night.isoformat():  # already pointing here: a skipped run writes nothing
            publish_latest(ctx.warehouse, ctx.night)


def run_stage(ctx: NightContext, name: str, force: bool = False) -> tuple[Path, bool]:
    """Run one stage unless its fingerprint shows it unchanged; (manifest path, skipped).

    The stage's record is deleted before it runs and written only after it returned, so a stage
    that failed or was killed is never skipped next time."""
    with private_writes(ctx):
        decision = fingerprint.decide(ctx, name, force)
        if decision.skip:
            _on_skip(ctx, name)
            return fingerprint.manifest_of(ctx, name), True
        fingerprint.forget(ctx, name)
        manifest = stage_function(name)(ctx)
        record_settings(ctx, name, manifest)
        fingerprint.remember(ctx, decision, manifest)
        return manifest, False


def record_settings(ctx: NightContext, name: str, manifest: Path) -> None:
    """Add `settings` to a stage's manifest: the run's settings (ctx.settings) and the serving
    database with its password hidden; no secret is in either. Before the fingerprint is taken, so
    the manifest recorded is the one on disk."""
    if name not in MANIFEST_STAGES or Path(manifest) != ctx.warehouse.manifest(ctx.night, name):
        return
    content = json.loads(Path(manifest).read_text())
    content["settings"] = ctx.settings.manifest_section(ctx.serving_url)
    write_text_atomic(Path(manifest), json.dumps(content, indent=2, ensure_ascii=False, default=str) + "\n")


def _planned_ingest(ctx: NightContext) -> Path:
    return fingerprint.record_path(ctx, "ingest").with_name("ingest.planned.json")


def plan_night_ingest(ctx: NightContext, max_shards: int, force: bool = False) -> list[int]:
    """The DAG's ingest plan: [] when ingest is unchanged (the mapped shards get no instance),
    otherwise `plan_ingest`'s shard numbers; the decision waits in the run folder for
    `finalize_night_ingest`."""
    from transforms.ingest.stage import plan_ingest

    with private_writes(ctx):
        return _plan_night_ingest(ctx, plan_ingest, max_shards, force)


def _plan_night_ingest(ctx: NightContext, plan_ingest, max_shards: int, force: bool) -> list[int]:
    decision = fingerprint.decide(ctx, "ingest", force)
    planned = _planned_ingest(ctx)
    if decision.skip:
        planned.unlink(missing_ok=True)
        return []
    fingerprint.forget(ctx, "ingest")
    knobs = ctx.settings.ingest  # the DAG's own cap (its mapped tasks) bounds the setting
    shards = plan_ingest(
        ctx, max_shards=min(max_shards, knobs.max_shards), shard_bytes_target=knobs.shard_bytes_target
    )
    planned.parent.mkdir(parents=True, exist_ok=True)
    planned.write_text(
        json.dumps(
            {
                "key": decision.key,
                "reason": decision.reason,
                "parts": decision.parts,
                "since_ns": decision.since_ns,
            }
        )
    )
    return shards


def finalize_night_ingest(ctx: NightContext) -> Path:
    """The DAG's ingest finalize: the manifest of the unchanged ingest, or `finalize_ingest` of the
    shards just read, then its fingerprint."""
    from transforms.ingest.stage import finalize_ingest

    with private_writes(ctx):
        return _finalize_night_ingest(ctx, finalize_ingest)


def ingest_night_shard(ctx: NightContext, shard: int) -> Path:
    """The DAG's ingest of one shard, its writes private like every stage's."""
    from transforms.ingest.stage import ingest_shard

    with private_writes(ctx):
        return ingest_shard(ctx, shard)


def _finalize_night_ingest(ctx: NightContext, finalize_ingest) -> Path:
    planned = _planned_ingest(ctx)
    record = fingerprint.read_record(ctx, "ingest")
    if not planned.exists() or (record and _records_plan(record, json.loads(planned.read_text()))):
        if record is None:
            raise RuntimeError(f"ingest of {ctx.night} was neither planned nor recorded: run the plan first")
        planned.unlink(missing_ok=True)  # a retry after the record was written
        return fingerprint.manifest_of(ctx, "ingest")
    plan = json.loads(planned.read_text())
    manifest = finalize_ingest(ctx)
    record_settings(ctx, "ingest", manifest)
    decision = fingerprint.Decision(
        "ingest", plan["key"], False, plan["reason"], plan["parts"], plan.get("since_ns")
    )
    fingerprint.remember(ctx, decision, manifest)
    planned.unlink()
    return manifest


def _records_plan(record: dict, plan: dict) -> bool:
    """Whether the ingest record was written for this plan (a retry of the finalize after it): the
    same key, or, for a plan whose key waited for the stage (fingerprint.DEFERRED_INPUT), the same
    decision time."""
    if plan["key"] is None:
        return plan.get("since_ns") is not None and record.get("since_ns") == plan["since_ns"]
    return record["key"] == plan["key"]


@dataclass
class RunSummary:
    night: dt.date
    stages: list[StageTiming] = field(default_factory=list)
    ledger: dict | None = None


def run_night(
    ctx: NightContext,
    stages: list[str] | None = None,
    on_stage: Callable[[str, str], None] | None = None,
    force: bool = False,
    side_by_side: bool | None = None,
) -> RunSummary:
    """Run the night's stages under the night's lock; raises on the first failure.

    Stages that wait for none of each other run side by side (quality beside reconcile, report
    beside snapshot: transforms/orchestration/workers.py) unless `side_by_side` (default: the
    setting run.side_by_side) is False or this process may not fork; either way a failing stage
    fails the night as it did alone: the first failing stage in the night's order is recorded and
    its exception raised, once the stages beside it have finished. `on_stage(name, event)`:
    "start", then "done", "skipped" (unchanged since it last finished; `force` runs them all) or
    "failed". The summary lists the stages in the night's order."""
    summary = RunSummary(ctx.night)
    names = stages or list(STAGES)
    if side_by_side is None:
        side_by_side = ctx.settings.run.side_by_side
    forking = side_by_side and workers.can_fork()
    plan = workers.waves(names) if forking else [[name] for name in names]
    with night_lock(ctx):
        early = (
            workers.start_early(ctx, plan, lambda n: _will_fork(ctx, n, force), run_stage, force)
            if forking
            else {}
        )
        warmed: set[str] = set(early)  # each stage is warmed up once a night
        try:
            for i, wave in enumerate(plan):
                later = [n for w in plan[i + 1 :] for n in w if n not in warmed]
                if _run_wave(ctx, wave, summary, on_stage, force, early, later):
                    warmed.update(later)
        finally:
            for worker in early.values():  # the night failed before their wave: sent away unused
                worker.stop()
        if stages is None:
            clear_failed_stage(ctx)
    ledger_path = ctx.warehouse.ledger(ctx.night)
    if ledger_path.exists():
        summary.ledger = json.loads(ledger_path.read_text())
    return summary


def _will_fork(ctx: NightContext, name: str, force: bool) -> bool:
    """Whether a stage that is not the last of its wave runs in a worker: it will run (no record
    yet, or forced); a stage with a record is likely skipped, and a fork would cost more."""
    return force or not fingerprint.record_path(ctx, name).exists()


def _run_wave(
    ctx: NightContext,
    wave: list[str],
    summary: RunSummary,
    on_stage: Callable[[str, str], None] | None,
    force: bool,
    early: dict[str, workers.StageWorker] | None = None,
    later: list[str] | None = None,
) -> bool:
    """Run one wave: every stage but the last that will run in a worker (the one started early
    for it, if any: `early`, emptied of this wave's), the others here in order, then, while the
    workers finish, warm up the `later` stages here; then report them in order, and fail on the
    first failure. Returns whether the later stages were warmed up."""
    early = early if early is not None else {}
    forked = [n for n in wave[:-1] if _will_fork(ctx, n, force)]
    for name in [n for n in wave if n in early and n not in forked]:
        early.pop(name).cancel()
    results: dict[str, tuple[Path, bool, float]] = {}
    errors: dict[str, Exception] = {}
    beside: dict[str, workers.StageWorker] = {}
    try:
        for name in forked:
            if on_stage:
                on_stage(name, "start")
            if name in early:
                beside[name] = early.pop(name)
                beside[name].release()
            else:
                beside[name] = workers.StageWorker(ctx, name, force, run_stage)
        for name in (n for n in wave if n not in beside):  # here, one after the other as before
            if on_stage:
                on_stage(name, "start")
            started = time.perf_counter()
            try:
                results[name] = (*run_stage(ctx, name, force), time.perf_counter() - started)
            except Exception as e:
                errors[name] = e
                break
        warming = bool(beside) and not errors
        if warming:
            for name in later or []:
                workers.warm_up(name)
        for name, worker in beside.items():  # the stages beside it finish before the night fails
            try:
                results[name] = worker.result()
            except Exception as e:
                errors[name] = e
    finally:
        for worker in beside.values():  # interrupted: the stages beside it are ended too
            worker.stop()
    for name in wave:
        if name in results:
            manifest, skipped, seconds = results[name]
            summary.stages.append(StageTiming(name, seconds, manifest, skipped))
            if on_stage:
                on_stage(name, "skipped" if skipped else "done")
    for name in wave:  # the first failing stage in the night's order fails the night
        if name in errors:
            record_failed_stage(ctx, name)
            if on_stage:
                on_stage(name, "failed")
            raise errors[name]
    return warming


def night_alerts(ctx: NightContext) -> list[dict]:
    """The night's silence and volume alerts written by the report (`runs/<D>/alerts.json`)."""
    path = ctx.warehouse.alerts(ctx.night)
    return json.loads(path.read_text())["alerts"] if path.exists() else []


def clear_failed_stage(ctx: NightContext) -> None:
    """Forget an earlier failure of the night once a whole run of it has succeeded (an operator
    must not read a stale failed stage after the re-run that repaired it)."""
    ctx.warehouse.status(ctx.night).unlink(missing_ok=True)
    path = ctx.warehouse.ledger(ctx.night)
    if path.exists():
        ledger = json.loads(path.read_text())
        if ledger.pop("run", None) is not None:
            ledger_mod.write_ledger(path, ledger)


def record_failed_stage(ctx: NightContext, stage: str) -> None:
    """Note the failed stage in the night's run folder and in its ledger (created if the night
    failed before the ledger stage), for operators and the next run."""
    status = {
        "night": ctx.night.isoformat(),
        "failed_stage": stage,
        "at": dt.datetime.now(dt.UTC).isoformat(),
    }
    path = ctx.warehouse.status(ctx.night)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(status))
    ledger_path = ctx.warehouse.ledger(ctx.night)
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {"date": ctx.night.isoformat()}
    ledger["run"] = {"status": "failed", "failed_stage": stage, "at": status["at"]}
    ledger_mod.write_ledger(ledger_path, ledger)
