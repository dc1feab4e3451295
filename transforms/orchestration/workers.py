"""Stages that read nothing of each other run side by side in `healthbook run` (issue #19).

The night's stages fall into waves (`waves`): a stage joins the wave before it when it waits for
none of that wave's stages, directly or through others (the declarations' `upstream` and `after`).
A night is [ingest] [quality, reconcile] [load] [ledger] [report, snapshot]. In a wave, every stage
but the last runs in a forked process (`StageWorker`) while this process runs the last one; the
wave ends when all of them have. A worker is forked one wave ahead and imports its stage's modules
(`Stage.imports`: Great Expectations alone is 3.6-5.4 s) while the earlier wave runs; it starts
its stage only when told to.

Everything a stage does stays in `pipeline.run_stage`, which the worker calls as this process
would: its fingerprint, its manifest's settings, its private writes (the umask is the worker's
own). What crosses back is small: the manifest's path, whether it was skipped, its seconds, or
the exception it raised (re-raised here, with the worker's traceback as its cause).

Forking needs the fork start method and a process that may have children: a daemonic process
(a Celery prefork worker's task) runs the stages one after the other instead (`can_fork`).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import multiprocessing
import os
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

# How long a waiting worker sleeps between looks at its parent (it leaves when the parent is gone).
_PARENT_CHECK_S = 1.0
# How long a worker told to stop before its turn may take to leave before it is terminated.
_STOP_WAIT_S = 5.0


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


def _warm_up(name: str, run: str) -> None:
    """Import the stage's module and its declared imports; a failure is left to the stage itself."""
    for module in (run.split(":")[0], *BY_NAME[name].imports):
        with contextlib.suppress(Exception):
            importlib.import_module(module)


def _serve(
    conn: Connection, parent: int, ctx: NightContext, name: str, force: bool, run_stage: RunStage
) -> None:
    """The worker: warm up, wait for "run" (or leave on "stop", a closed pipe or a gone parent),
    run the stage, send back ("done", manifest, skipped, seconds) or ("error", exception, text)."""
    _warm_up(name, BY_NAME[name].run)
    while not conn.poll(_PARENT_CHECK_S):
        if os.getppid() != parent:
            return
    try:
        if conn.recv() != "run":
            return
    except EOFError:
        return
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
    """A forked process that runs one stage of the night when told to (`start`, then `result`)."""

    def __init__(self, ctx: NightContext, name: str, force: bool, run_stage: RunStage):
        self.name = name
        self._conn, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("fork").Process(
            target=_serve,
            args=(child, os.getpid(), ctx, name, force, run_stage),
            name=f"healthbook-{name}",
        )
        # The worker must never collect garbage it inherited: a cycle holding a DuckDB connection or
        # another C library's object left by an earlier stage crashed a worker's first collection
        # (SIGSEGV while importing matplotlib). Collected here instead, where it is safe, and what
        # is left is frozen for the fork (outside the collector's reach in the worker only).
        gc.collect()
        gc.freeze()
        try:
            self._process.start()
        finally:
            gc.unfreeze()
        child.close()
        self._started = False

    def start(self) -> None:
        self._conn.send("run")
        self._started = True

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
        """End the worker: before its turn it leaves by itself, during its stage it is terminated."""
        if not self._process.is_alive():
            self._process.join()
            return
        if not self._started:
            with contextlib.suppress(OSError):
                self._conn.send("stop")
            self._process.join(_STOP_WAIT_S)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._conn.close()
