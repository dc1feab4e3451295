"""The stages after ingest, quality and reconcile (data_docs .. snapshot), forced, on a night that
already ran, into a fresh serving database: the part of the night a change to the load, the
feedback files or the report moves, measured without ingest's minutes and their disk-cache noise.

Run it from the tree to measure (PYTHONPATH names it), alternating trees (A B B A) on the same
warehouse; each call appends one JSON line to OUT:

    PYTHONPATH=$TREE .venv/bin/python benchmarks/post_ingest_stages.py --night-dir /work/nights/n1000000 \\
        --warehouse /work/nights/n1000000/warehouse_postgresql \\
        --serving postgresql://postgres@127.0.0.1:5432/hb_perf --out /tmp/post_ingest.jsonl

The serving database (PostgreSQL) is dropped and created again first, so every run loads into an
empty database as a first run of the night does. The night's ingest, quality and reconcile outputs
are read, never rewritten.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

from national_night import fresh_database  # this folder is on sys.path when the script runs

NIGHT = dt.date(2026, 11, 26)
BEFORE = ("ingest", "quality", "reconcile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--night-dir", type=Path, required=True, help="holds extracts/ and registry/")
    parser.add_argument("--warehouse", type=Path, required=True, help="a warehouse the night already ran in")
    parser.add_argument("--serving", required=True, help="postgresql://... (dropped and created again)")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file to append to")
    a = parser.parse_args()
    os.environ.setdefault("HEALTHBOOK_PSEUDONYM_KEY", "00" * 32)  # national_night.py's key
    serving = fresh_database(a.serving)

    from transforms.core.context import make_context
    from transforms.orchestration import pipeline

    ctx = make_context(NIGHT, a.night_dir / "extracts", a.night_dir / "registry", a.warehouse, serving)
    names = [name for name in pipeline.STAGES if name not in BEFORE]
    started = time.perf_counter()
    summary = pipeline.run_night(ctx, stages=names, force=True)
    result = {
        "tree": os.environ.get("PYTHONPATH", ""),
        "total_s": round(time.perf_counter() - started, 1),
        "stage_s": {s.stage: round(s.seconds, 1) for s in summary.stages},
    }
    print(json.dumps(result))
    with a.out.open("a") as fh:
        fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
