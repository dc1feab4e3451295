"""Run one night end to end in this process and print its per-stage figures as one JSON line.

Called by run.py in a fresh subprocess, with PYTHONPATH naming the code tree to measure, per (size, backend, run) so peak RSS is per run. A sampler
thread sums the RSS of this process and its children (the ingest process pool) every 0.2 s and
keeps the peak per stage and overall.

    .venv/bin/python benchmarks/national_day/run_once.py --night 2026-11-26 --extracts E --registry R \
        --warehouse W [--serving-url URL] --result FILE
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import psutil


class Terminated(Exception):
    """SIGTERM (from the RSS limit or from outside): stop the stage and still write the figures."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated(f"signal {signum}")


class StagePeakRss:
    """Peak summed RSS of this process tree, overall and per stage (the stage named by `current`)."""

    def __init__(self, interval_s: float = 0.2, limit_bytes: int | None = None) -> None:
        self.interval_s = interval_s
        self.limit_bytes = limit_bytes
        self.over_limit = False
        self.current = "startup"
        self.peak_by_stage: dict[str, int] = {}
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process(os.getpid())
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
            stage = self.current
            self.peak_by_stage[stage] = max(self.peak_by_stage.get(stage, 0), total)
            self.peak_bytes = max(self.peak_bytes, total)
            if self.limit_bytes and total > self.limit_bytes and not self.over_limit:
                # the machine is shared: stop this run before it starves everyone else
                self.over_limit = True
                os.kill(os.getpid(), signal.SIGTERM)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--night", required=True)
    parser.add_argument("--extracts", type=Path, required=True)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--serving-url", default=None)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--max-rss-mb", type=int, default=None, help="stop the run above this tree RSS")
    a = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    for name in ("great_expectations", "splink", "airflow"):
        logging.getLogger(name).setLevel(logging.WARNING)

    signal.signal(signal.SIGTERM, _raise_terminated)
    rss = StagePeakRss(limit_bytes=a.max_rss_mb * 2**20 if a.max_rss_mb else None)
    rss.start()
    started = time.perf_counter()
    stage_started: dict[str, float] = {}
    stage_seconds: dict[str, float] = {}

    def on_stage(name: str, event: str) -> None:
        if event == "start":
            rss.current = name
            stage_started[name] = time.perf_counter()
            print(f"[{dt.datetime.now():%H:%M:%S}] {name} start", file=sys.stderr, flush=True)
        else:
            stage_seconds[name] = time.perf_counter() - stage_started[name]
            print(
                f"[{dt.datetime.now():%H:%M:%S}] {name} done {stage_seconds[name]:.1f}s",
                file=sys.stderr,
                flush=True,
            )

    from transforms.core.context import make_context
    from transforms.orchestration.pipeline import run_night

    ctx = make_context(dt.date.fromisoformat(a.night), a.extracts, a.registry, a.warehouse, a.serving_url)
    error = None
    ledger = None
    try:
        summary = run_night(ctx, on_stage=on_stage)
        stage_seconds = {t.stage: t.seconds for t in summary.stages}
        ledger = summary.ledger
    except Exception as e:  # the benchmark reports which stage failed and why
        error = f"{type(e).__name__}: {e}"
        if rss.over_limit:
            error = f"stopped: process tree RSS over --max-rss-mb {a.max_rss_mb} ({error})"
        traceback.print_exc()
        failed = rss.current
        stage_seconds[failed] = time.perf_counter() - stage_started.get(failed, started)
    total = time.perf_counter() - started
    rss.stop()
    result = {
        "stage_seconds": {k: round(v, 2) for k, v in stage_seconds.items()},
        "total_seconds": round(total, 2),
        # CPU of this process and its children (the stage workers, the ingest pool): user + system
        "cpu_seconds": round(
            sum(
                (u.ru_utime + u.ru_stime)
                for u in (
                    resource.getrusage(resource.RUSAGE_SELF),
                    resource.getrusage(resource.RUSAGE_CHILDREN),
                )
            ),
            2,
        ),
        "peak_rss_mb": round(rss.peak_bytes / 2**20),
        "stage_peak_rss_mb": {k: round(v / 2**20) for k, v in rss.peak_by_stage.items()},
        "error": error,
        "failed_stage": rss.current if error else None,
        "ledger_totals": (ledger or {}).get("totals"),
        "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    a.result.write_text(json.dumps(result, indent=2))
    return 1 if error else 0


if __name__ == "__main__":
    raise SystemExit(main())
