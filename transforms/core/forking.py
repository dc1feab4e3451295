"""Forked helper processes: whether this process may fork, and a fork that is safe for what the
parent holds. Used by `healthbook run`'s stage workers (transforms/orchestration/workers.py)."""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable
from multiprocessing.process import BaseProcess


def can_fork() -> bool:
    """True when this process may fork (the fork start method, and not a daemonic process: a Celery
    prefork worker's task may not have children)."""
    return "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon


def start_forked(target: Callable[..., None], args: tuple, name: str) -> BaseProcess:
    """Fork a process running `target(*args)`, started.

    The child must never collect garbage it inherited: a cycle holding a DuckDB connection or
    another C library's object left by an earlier stage crashed a worker's first collection
    (SIGSEGV). Collected here instead, where it is safe, and what is left is frozen for the fork
    (outside the collector's reach in the child only)."""
    process = multiprocessing.get_context("fork").Process(target=target, args=args, name=name)
    gc.collect()
    gc.freeze()
    try:
        process.start()
    finally:
        gc.unfreeze()
    return process
