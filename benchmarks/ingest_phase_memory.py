"""Peak RSS of the ingest stage per phase and per process (not in CI).

Runs `ingest_extracts` in this process and samples, every 50 ms, the RSS of this process (the
parent) and of each pool worker, per phase (read = the workers reading file groups, finalize =
versions and the staged datasets). Shows where peak memory grows with the size of the night.

    PYTHONPATH=. .venv/bin/python benchmarks/ingest_phase_memory.py /work/nights/n100000/extracts/2026-11-26
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil

from transforms.core.warehouse import Warehouse
from transforms.ingest import stage as ingest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("night_dir", type=Path, help="one night's extracts folder (<extracts>/<D>)")
    args = ap.parse_args()
    phase, peaks, done = ["plan"], {}, threading.Event()

    def sample() -> None:
        me = psutil.Process()
        while not done.is_set():
            try:
                parent = me.memory_info().rss >> 20
                workers = [c.memory_info().rss >> 20 for c in me.children(recursive=True)]
            except psutil.Error:
                continue
            p = peaks.setdefault(phase[0], {"parent_mb": 0, "largest_worker_mb": 0, "total_mb": 0})
            p["parent_mb"] = max(p["parent_mb"], parent)
            p["largest_worker_mb"] = max(p["largest_worker_mb"], max(workers, default=0))
            p["total_mb"] = max(p["total_mb"], parent + sum(workers))
            time.sleep(0.05)

    def in_phase(name, f):
        def run(*a, **k):
            phase[0] = name
            try:
                return f(*a, **k)
            finally:
                phase[0] = "after " + name

        return run

    ingest._read_shards = in_phase("read", ingest._read_shards)
    ingest._finalize = in_phase("finalize", ingest._finalize)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    warehouse = Path(tempfile.mkdtemp(prefix="ingest-memory-"))
    try:
        night = dt.date.fromisoformat(args.night_dir.name)
        ingest.ingest_extracts(args.night_dir, night, Warehouse(warehouse))
        time.sleep(0.2)
    finally:
        done.set()
        shutil.rmtree(warehouse, ignore_errors=True)
    print(json.dumps({"night_dir": str(args.night_dir), "peaks_by_phase": peaks}, indent=2))


if __name__ == "__main__":
    main()
