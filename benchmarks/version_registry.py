"""Version registry cost against the history kept: one file per night vs one file of every night.

Not run in CI. Synthesizes `--nights` earlier nights of `--per-night` encounter versions each
(in a scratch warehouse), then times, for one more night of `--tonight` versions (half of them
re-sends of earlier encounters), in the same run:
  - per night (this code): `transforms.ingest.stage.earlier_versions` (a filtered scan of the earlier
    nights' files for tonight's encounters) + `assign_versions` + writing tonight's file;
  - baseline: the earlier layout, every night in one file: read it whole, `assign_versions`,
    rewrite it whole.
Reports seconds and peak RSS of each (child processes), and the ratio.

    .venv/bin/python benchmarks/version_registry.py --nights 10 --per-night 1000000 --tonight 1000000 \
        --work /tmp/vr --out benchmarks/results/version_registry.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIRST_NIGHT = dt.date(2026, 10, 1)
FACILITIES = 200

CHILD = r"""
import datetime as dt, json, resource, sys, time
from pathlib import Path
import pandas as pd, pyarrow.parquet as pq
from transforms.ingest import stage as ingest
from transforms.core import parquet_io
from transforms.core.warehouse import Warehouse
mode, root, night = sys.argv[1], Path(sys.argv[2]), dt.date.fromisoformat(sys.argv[3])
wh = Warehouse(root / "warehouse")
received = pd.read_parquet(root / "tonight.parquet")
started = time.perf_counter()
if mode == "per_night":
    previous = ingest.earlier_versions(wh, night, received[["facility_code", "encounter_id"]])
    out = ingest.assign_versions(previous, received, night)
    ingest._write_versions(wh, night, ingest._versions_table(out[out["night"] == night]))
else:
    single = root / "single" / "encounter_versions.parquet"
    previous = pq.read_table(single).to_pandas()
    previous["night"] = pd.to_datetime(previous["night"]).dt.date
    out = ingest.assign_versions(previous, received, night)
    parquet_io.write_table(ingest._versions_table(out), single)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "versions_tonight": int((out["night"] == night).sum())}))
"""


def night_rows(rng: np.random.Generator, night: dt.date, start: int, n: int) -> pa.Table:
    ids = np.arange(start, start + n)
    return pa.table(
        {
            "facility_code": pa.array([f"{79000 + i % FACILITIES:05d}" for i in ids], pa.string()),
            "encounter_id": pa.array([f"LK{i:012d}" for i in ids], pa.string()),
            "version": pa.array(np.ones(n, dtype=np.int64)),
            "night": pa.array([night] * n, pa.date32()),
            "source_file": pa.array(
                [f"{79000 + i % FACILITIES:05d}/{night:%Y%m%d}.xml" for i in ids], pa.string()
            ),
            "hoso_index": pa.array(ids % 5000),
            "content_hash": pa.array([f"{h:064x}" for h in rng.integers(0, 2**62, n)], pa.string()),
        }
    )


def build(work: Path, nights: int, per_night: int, tonight_n: int) -> dt.date:
    from transforms.core.warehouse import Warehouse
    from transforms.ingest import stage as ingest

    rng = np.random.default_rng(7)
    wh = Warehouse(work / "warehouse")
    tables = []
    for k in range(nights):
        night = FIRST_NIGHT + dt.timedelta(days=k)
        table = night_rows(rng, night, k * per_night, per_night)
        ingest._write_versions(wh, night, table)
        tables.append(table)
    single = work / "single" / "encounter_versions.parquet"
    single.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables), single, compression="zstd")
    tonight = FIRST_NIGHT + dt.timedelta(days=nights)
    resent = tonight_n // 2  # re-sends of encounters from the earlier nights, spread over them
    old_ids = rng.choice(nights * per_night, resent, replace=False)
    new_ids = np.arange(nights * per_night, nights * per_night + tonight_n - resent)
    ids = np.concatenate([old_ids, new_ids])
    received = {
        "facility_code": [f"{79000 + i % FACILITIES:05d}" for i in ids],
        "encounter_id": [f"LK{i:012d}" for i in ids],
        "created_on": [tonight.strftime("%Y%m%d")] * len(ids),
        "source_file": [f"{79000 + i % FACILITIES:05d}/{tonight:%Y%m%d}.xml" for i in ids],
        "hoso_index": (ids % 5000).tolist(),
        "content_hash": [f"{h:064x}" for h in rng.integers(0, 2**62, len(ids))],
    }
    pq.write_table(pa.table(received), work / "tonight.parquet")
    return tonight


def run(mode: str, work: Path, night: dt.date) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(work), night.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=10)
    parser.add_argument("--per-night", type=int, default=1_000_000)
    parser.add_argument("--tonight", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    a = parser.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    night = build(a.work, a.nights, a.per_night, a.tonight)
    build_s = time.perf_counter() - started
    load_before = [round(x, 2) for x in os.getloadavg()]
    per_night = run("per_night", a.work, night)
    baseline = run("single_file", a.work, night)
    result = {
        "command": ".venv/bin/python benchmarks/version_registry.py " + " ".join(sys.argv[1:]),
        "history_versions": a.nights * a.per_night,
        "tonight_versions": a.tonight,
        "build_seconds": round(build_s, 1),
        "per_night": {k: round(v, 2) if isinstance(v, float) else v for k, v in per_night.items()},
        "single_file_baseline": {k: round(v, 2) if isinstance(v, float) else v for k, v in baseline.items()},
        "time_ratio": round(per_night["seconds"] / baseline["seconds"], 3),
        "rss_ratio": round(per_night["peak_rss_mb"] / baseline["peak_rss_mb"], 3),
        "load_average_1_5_15": [load_before, [round(x, 2) for x in os.getloadavg()]],
    }
    assert per_night["versions_tonight"] == baseline["versions_tonight"] == a.tonight
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
