"""Stages that read nothing of each other run side by side in `healthbook run` (issue #19).

The night's stages fall into waves (`waves`): a stage joins the wave before it when it waits for
none of that wave's stages, directly or through others (the declarations' `upstream` and `after`).
A night is [ingest] [quality, reconcile] [data_docs, feedback, load] [ledger] [report, snapshot]. In a wave, a stage
that will run (it has no fingerprint record for the night, or the run is forced) runs in a forked
process (`StageWorker`) while this process runs the wave's last stage; a stage with a record is
likely skipped and runs here (a fork would cost more than the skip). The wave ends when all of
its stages have.

Everything a stage does stays in `pipeline.run_stage`, which the worker calls as this process
would: its fingerprint, its manifest's settings, its private writes (the umask is the worker's
own). What crosses back is small: the manifest's path, whether it was skipped, its seconds, or
the exception it raised (re-raised here, with the worker's traceback as its cause).

While this process waits for a wave's workers, it warms up the later stages (`warm_up`: their
modules' imports, e.g. the load's 0.5-1 s, and their declared warm-ups, e.g. the report's
templates, ~0.5 s); workers forked later inherit what it imported.

A stage that declares an early warm-up (`Stage.early`: the data_docs stage imports Great
Expectations, 3.7-6 s) gets its worker when the night starts (`start_early`): the worker
calls the warm-up while the earlier waves run, then waits; its wave releases it (`release`) or,
when the stage will not run there after all, sends it away (`cancel`). It was forked before
ingest, so it holds nothing of the night: like every worker, it reads what the earlier stages
wrote from the warehouse. On a quiet machine ingest leaves a core mostly idle on small nights
(its fixed costs are serial); on a saturated one the import only moves (measured in session 8
on a loaded machine: ingest 7-10 s instead of 4-5 s, the night no faster), and on a large night
it is a few seconds against ingest's minutes.

Forking needs the fork start method and a process that may have children: a daemonic process
(a Celery prefork worker's task) runs the stages one after the other instead (`can_fork`).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import pickle
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from transforms.core.forking import can_fork, start_forked
from transforms.orchestration.stages import BY_NAME

__all__ = ["StageWorker", "can_fork", "start_early", "waits_for", "warm_up", "waves"]

if TYPE_CHECKING:
    from transforms.core.context import NightContext


def waits_for(name: str) -> set[str]:
    """Every stage `name` waits for: its upstream and `after` stages, and theirs, transitively."""
    out: set[str] = set()
    todo = [name]
    while todo:
        stage = BY_NAME[todo.pop()]
        for other in (*stage.upstream, *stage.after):
            if other not in out:
                out.add(other)
                todo.append(other)
    return out


def waves(names: list[str]) -> list[list[str]]:
    """`names` (in the night's order) grouped in consecutive waves whose stages wait for none of
    each other: [[ingest], [quality, reconcile], [data_docs, feedback, load], [ledger], [report, snapshot]]."""
    grouped: list[list[str]] = []
    for name in names:
        if grouped and not waits_for(name) & set(grouped[-1]):
            grouped[-1].append(name)
        else:
            grouped.append([name])
    return grouped


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (the cause of the one re-raised here)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


RunStage = Callable[["NightContext", str, bool], tuple[Path, bool]]


def warm_up(name: str) -> None:
    """Import the stage's module and call its declared warm-up, if any. A failure is left for the
    stage itself to meet (and report) when it runs: warming is only ahead of time."""
    stage = BY_NAME[name]
    with contextlib.suppress(Exception):
        importlib.import_module(stage.run.split(":")[0])
        if stage.warm:
            module, func = stage.warm.split(":")
            getattr(importlib.import_module(module), func)()


def _serve(
    conn: Connection,
    ctx: NightContext,
    name: str,
    force: bool,
    run_stage: RunStage,
    hold: Connection | None = None,
) -> None:
    """The worker: run the stage, send back ("done", manifest, skipped, seconds) or ("error",
    exception, traceback text). A worker started early (`hold`) warms up first and waits for
    its turn: the parent's `time.monotonic()` when it released the worker runs the stage (its
    seconds count from then, the end of the warm-up included), anything else ends it."""
    started = time.monotonic()
    if hold is not None:
        warm_up(name)
        try:
            turn = hold.recv()
        except EOFError:
            turn = None
        hold.close()
        if not isinstance(turn, float):
            conn.close()
            return
        started = turn
    try:
        manifest, skipped = run_stage(ctx, name, force)
        conn.send(("done", manifest, skipped, time.monotonic() - started))
    except BaseException as e:  # noqa: BLE001  (every failure goes back to the parent, which decides)
        text = traceback.format_exc()
        try:
            pickle.dumps(e)
        except Exception:  # noqa: BLE001  (an exception that cannot cross keeps its type's name)
            e = RuntimeError(f"{type(e).__name__}: {e}")
        conn.send(("error", e, text))


class StageWorker:
    """A forked process running one stage of the night (`result` waits for it). `held`: the
    worker warms up and waits until `release` (or `cancel`)."""

    def __init__(self, ctx: NightContext, name: str, force: bool, run_stage: RunStage, held: bool = False):
        self.name = name
        self._conn, child = multiprocessing.Pipe(duplex=False)
        hold, self._hold = multiprocessing.Pipe(duplex=False) if held else (None, None)
        self._process = start_forked(_serve, (child, ctx, name, force, run_stage, hold), f"healthbook-{name}")
        child.close()
        if hold is not None:
            hold.close()

    def release(self) -> None:
        """Let a held worker run its stage."""
        self._hold.send(time.monotonic())  # CLOCK_MONOTONIC: one clock for every process
        self._hold.close()

    def cancel(self) -> None:
        """Send a held worker away without running its stage."""
        if self._hold is not None and not self._hold.closed:
            self._hold.close()
        self._process.join()
        self._conn.close()

    def result(self) -> tuple[Path, bool, float]:
        """(manifest, skipped, seconds) of the stage, or its exception raised here."""
        try:
            message = self._conn.recv()
        except EOFError:
            self._process.join()
            raise RuntimeError(
                f"the {self.name} stage's process ended without a result (exit code {self._process.exitcode})"
            ) from None
        finally:
            self._conn.close()
        self._process.join()
        if message[0] == "error":
            _, error, text = message
            raise error from RemoteTraceback(text)
        _, manifest, skipped, seconds = message
        return manifest, skipped, seconds

    def stop(self) -> None:
        """End the worker (this process was interrupted or failed before waiting for it)."""
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._conn.close()


def start_early(
    ctx: NightContext,
    plan: list[list[str]],
    will_fork: Callable[[str], bool],
    run_stage: RunStage,
    force: bool,
) -> dict[str, StageWorker]:
    """Held workers, started now, for the stages after the first wave that declare an `early`
    warm-up and will run in a worker (`will_fork`: not the last of their wave, and not likely
    skipped). Other stages are warmed up in this process while it waits for a wave's workers (a
    worker forked then inherits it): an early worker takes memory for the whole night, and a
    core from the first wave while it warms up."""
    early: dict[str, StageWorker] = {}
    wanted = [
        name
        for wave in plan[1:]
        for name in wave[:-1]
        if BY_NAME[name].early and BY_NAME[name].warm and will_fork(name)
    ]
    if wanted:
        # the libraries every stage needs, imported once before the fork (shared by the worker)
        importlib.import_module("pandas")
        importlib.import_module("pyarrow.parquet")
    for name in wanted:
        early[name] = StageWorker(ctx, name, force, run_stage, held=True)
    return early
