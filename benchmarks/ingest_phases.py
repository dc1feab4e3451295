"""Ingest's phases on a night of any size (#19): discovery and plan, reading the envelopes, and
finalize (facts, versions and findings; the staged datasets; the rest), with the peak RSS of the
process tree. Each size runs into a fresh warehouse; the phase times are what `ingest_night` logs.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/ingest_phases.py --night-dir /work/nights/n100000 \\
        --night-dir /work/nights/n1000000 [--drop-caches] [--out FILE.jsonl]

A night directory holds `extracts/` as `benchmarks/national_day/generate_size.py` writes it.
`--drop-caches` (root only) empties the page cache first, so the read phase includes the disk, as
on a night whose extracts were just delivered; without it a second run reads them from memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "national_day"))

from generate_size import NIGHT, TreePeakRss  # noqa: E402  (the nights generate_size.py writes)

PHASE = re.compile(r"plan ([\d.]+) s \((\d+) files, (\d+) shards\), read ([\d.]+) s, finalize ([\d.]+) s")
FINALIZE = re.compile(r"facts, versions and findings ([\d.]+) s, datasets ([\d.]+) s, the rest ([\d.]+) s")

_CHILD = """
import datetime as dt, json, logging, sys, time
from pathlib import Path
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("transforms.ingest").addHandler(Keep())
logging.getLogger("transforms.ingest").setLevel(logging.INFO)
from transforms.core.warehouse import Warehouse
from transforms.ingest.stage import ingest_extracts
night_dir, warehouse = Path(sys.argv[1]), Path(sys.argv[2])
started = time.perf_counter()
ingest_extracts(night_dir, dt.date.fromisoformat(sys.argv[3]), Warehouse(warehouse))
print(json.dumps({"seconds": time.perf_counter() - started, "log": records}))
"""


def run(night_dir: Path, drop_caches: bool) -> dict:
    extracts = night_dir / "extracts" / NIGHT.isoformat()
    warehouse = night_dir / "warehouse_ingest_phases"
    shutil.rmtree(warehouse, ignore_errors=True)
    if drop_caches:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(extracts), str(warehouse), NIGHT.isoformat()],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    with TreePeakRss(proc.pid) as rss:
        out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"ingest of {night_dir} failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    phases = next(m for m in map(PHASE.search, result["log"]) if m)
    finalize = next(m for m in map(FINALIZE.search, result["log"]) if m)
    shutil.rmtree(warehouse, ignore_errors=True)
    return {
        "night": str(night_dir),
        "files": int(phases[2]),
        "shards": int(phases[3]),
        "seconds": round(result["seconds"], 1),
        "plan_s": float(phases[1]),
        "read_s": float(phases[4]),
        "finalize_s": float(phases[5]),
        "finalize_facts_s": float(finalize[1]),
        "finalize_datasets_s": float(finalize[2]),
        "finalize_rest_s": float(finalize[3]),
        "peak_rss_mb": round(rss.peak_bytes / 2**20),
        "page_cache": "dropped" if drop_caches else "as found",
        "at": dt.datetime.now().isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--night-dir", type=Path, action="append", required=True)
    parser.add_argument("--drop-caches", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="JSON lines file to append to")
    args = parser.parse_args()
    for night_dir in args.night_dir:
        result = run(night_dir, args.drop_caches)
        print(json.dumps(result), flush=True)
        if args.out:
            with args.out.open("a") as fh:
                fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
