"""The report stage alone on copies of a warehouse that went through every stage before it.

One round, in this (fresh) process, of the checkout named by PYTHONPATH (so the same script measures
two commits on the same input; run it alternately from both, in fresh processes):

- `stage_s`: the report's own imports + `build_report` of the night, after pandas and pyarrow are
  imported (the earlier stages of a night have imported them): what the stage costs in a night;
- `warm_s`: a second full build on a fresh copy (nothing left to import);
- `national_s`: `only_facilities=()`: the national and province pages, no facility page or feedback;
  `(warm_s - national_s) / facility_pages` is the cost of one facility's page, charts and feedback.

Prints one JSON line, with the number of line charts and facility pages written. The warehouse is
never written: each build gets its own copy under `scratch`.

    flock /work/bench.lock env PYTHONPATH=$PWD .venv/bin/python benchmarks/report_stage_only.py \
        <warehouse after ledger> <scratch> 2026-11-26

A warehouse after ledger: run the stages up to `ledger` with `transforms.orchestration.pipeline.run_stage`
(benchmarks/results/report_stage_only.md shows how).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path

import pandas  # noqa: F401  (loaded by the night's earlier stages: not the report's cost)
import pyarrow.parquet  # noqa: F401

from transforms.core.warehouse import Warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouse", type=Path, help="after ledger (read only: copies are built)")
    parser.add_argument("scratch", type=Path, help="where the copies go (replaced)")
    parser.add_argument("night", type=dt.date.fromisoformat)
    args = parser.parse_args()

    def fresh(name: str) -> Warehouse:
        target = args.scratch / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(args.warehouse, target)
        return Warehouse(target)

    first, second, national_only = fresh("stage"), fresh("warm"), fresh("national")
    started = time.perf_counter()
    from expectations.report import build_report

    build_report(first, args.night)
    stage_s = time.perf_counter() - started
    started = time.perf_counter()
    build_report(second, args.night)
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    build_report(national_only, args.night, only_facilities=())
    national_s = time.perf_counter() - started
    pages = first.quality / args.night.isoformat()
    charts = sorted((pages / "charts").glob("*.svg"))
    result = {
        "stage_s": round(stage_s, 3),
        "warm_s": round(warm_s, 3),
        "national_s": round(national_s, 3),
        "line_charts": sum(1 for c in charts if c.name != "heatmap.svg"),
        "heat_maps": sum(1 for c in charts if c.name == "heatmap.svg"),
        "facility_pages": len(list((pages / "facility").glob("*.html"))),
        "matplotlib_imported": "matplotlib" in sys.modules,
    }
    print(json.dumps(result))
    shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
