"""The load stage alone on a copy of a warehouse that went through ingest, quality and reconcile.

Prints load seconds, the process's CPU seconds, peak RSS of the process (ru_maxrss) and a checksum
of every serving table and of the load's warehouse files, so two commits (or batch sizes) can be
compared output for output:

    PYTHONPATH=. .venv/bin/python benchmarks/load_stage_only.py <warehouse> <copy> 2026-11-26 <registry> \
        [--serving-url URL] [--batch N]

Run it from a `git archive` of another commit to measure that commit's load on the same input (or
this script with PYTHONPATH naming the other checkout).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import resource
import shutil
import time
from pathlib import Path

import pandas as pd

from transforms.core.context import make_context
from transforms.load import stage as load
from transforms.serving.schema import SERVING_TABLES


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouse", type=Path, help="after reconcile (read only: a copy is loaded)")
    parser.add_argument("copy", type=Path, help="where the copy goes (replaced)")
    parser.add_argument("night", type=dt.date.fromisoformat)
    parser.add_argument("registry", type=Path)
    parser.add_argument("--serving-url", default=None, help="default: SQLite inside the copy")
    parser.add_argument("--batch", type=int, default=None, help="the setting load.batch_encounters")
    a = parser.parse_args()
    if a.copy.exists():
        shutil.rmtree(a.copy)
    shutil.copytree(a.warehouse, a.copy)
    ctx = make_context(a.night, Path("/nonexistent"), a.registry, a.copy, a.serving_url)
    if a.batch:
        ctx = dataclasses.replace(ctx, settings=ctx.settings.replace("load", batch_encounters=a.batch))
    started = time.perf_counter()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    load.load_night(ctx)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "seconds": round(time.perf_counter() - started, 1),
        # this process's CPU (all its threads; not the PostgreSQL server's): on a shared machine
        # the wall seconds follow the other processes, the CPU seconds much less
        "cpu_seconds": round(cpu_after.ru_utime + cpu_after.ru_stime - cpu.ru_utime - cpu.ru_stime, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    with load.serving_engine(ctx.serving_url).connect() as conn:
        for table in SERVING_TABLES:
            order = ", ".join(table.primary_key)
            rows = conn.exec_driver_sql(f"select * from {table.name} order by {order}").fetchall()
            out[table.name] = (len(rows), digest(repr([tuple(map(str, r)) for r in rows])))
    files = {
        "outcomes": ctx.warehouse.outcomes(a.night),
        "retried": ctx.warehouse.retried(a.night),
        "pending": ctx.warehouse.pending,
    }
    for name, path in files.items():
        frame = pd.read_parquet(path)
        out[name] = (len(frame), digest(frame.to_csv()))
    manifest = json.loads(ctx.warehouse.manifest(a.night, "load").read_text())
    manifest.pop("serving")
    out["manifest"] = digest(json.dumps(manifest, sort_keys=True))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
