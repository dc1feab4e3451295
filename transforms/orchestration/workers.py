"""Stages that read nothing of each other run side by side in `healthbook run` (issue #19).

The night's stages fall into waves (`waves`): a stage joins the wave before it when it waits for
none of that wave's stages, directly or through others (the declarations' `upstream` and `after`).
A night is [ingest] [quality, reconcile] [load] [ledger] [report, snapshot]. In a wave, a stage
that will run (it has no fingerprint record for the night, or the run is forced) runs in a forked
process (`StageWorker`) while this process runs the wave's last stage; a stage with a record is
likely skipped and runs here (a fork would cost more than the skip). The wave ends when all of
its stages have.

Everything a stage does stays in `pipeline.run_stage`, which the worker calls as this process
would: its fingerprint, its manifest's settings, its private writes (the umask is the worker's
own). What crosses back is small: the manifest's path, whether it was skipped, its seconds, or
the exception it raised (re-raised here, with the worker's traceback as its cause).

Why not sooner: a worker forked before ingest could import Great Expectations (3.6-5.4 s) while
ingest runs, but ingest's own pool already keeps both cores busy; measured on the 1,000-encounter
night, ingest then took 7-10 s instead of 4-5 s and the night gained nothing
(benchmarks/results/national_night.md, "1,000-encounter night (session 8)").

Forking needs the fork start method and a process that may have children: a daemonic process
(a Celery prefork worker's task) runs the stages one after the other instead (`can_fork`).
"""

from __future__ import annotations

import gc
import multiprocessing
import pickle
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from transforms.orchestration.stages import BY_NAME

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
    each other: [[ingest], [quality, reconcile], [load], [ledger], [report, snapshot]]."""
    grouped: list[list[str]] = []
    for name in names:
        if grouped and not waits_for(name) & set(grouped[-1]):
            grouped[-1].append(name)
        else:
            grouped.append([name])
    return grouped


def can_fork() -> bool:
    """True when this process may fork workers (the fork start method, not a daemonic process)."""
    return "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (the cause of the one re-raised here)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


RunStage = Callable[["NightContext", str, bool], tuple[Path, bool]]


def _serve(conn: Connection, ctx: NightContext, name: str, force: bool, run_stage: RunStage) -> None:
    """The worker: run the stage, send back ("done", manifest, skipped, seconds) or ("error",
    exception, traceback text)."""
    started = time.perf_counter()
    try:
        manifest, skipped = run_stage(ctx, name, force)
        conn.send(("done", manifest, skipped, time.perf_counter() - started))
    except BaseException as e:  # noqa: BLE001  (every failure goes back to the parent, which decides)
        text = traceback.format_exc()
        try:
            pickle.dumps(e)
        except Exception:  # noqa: BLE001  (an exception that cannot cross keeps its type's name)
            e = RuntimeError(f"{type(e).__name__}: {e}")
        conn.send(("error", e, text))


class StageWorker:
    """A forked process running one stage of the night (`result` waits for it)."""

    def __init__(self, ctx: NightContext, name: str, force: bool, run_stage: RunStage):
        self.name = name
        self._conn, child = multiprocessing.Pipe(duplex=False)
        self._process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(child, ctx, name, force, run_stage), name=f"healthbook-{name}"
        )
        # The worker must never collect garbage it inherited: a cycle holding a DuckDB connection or
        # another C library's object left by an earlier stage crashed a worker's first collection
        # (SIGSEGV). Collected here instead, where it is safe, and what is left is frozen for the
        # fork (outside the collector's reach in the worker only).
        gc.collect()
        gc.freeze()
        try:
            self._process.start()
        finally:
            gc.unfreeze()
        child.close()

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
