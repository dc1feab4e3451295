"""Compare the ingest outputs of two warehouses (staged Parquet, quarantine, versions, ingest.json).

Row for row, Arrow equality (not timing): used to check that an ingest change leaves a night's
staged output identical.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/compare_ingest.py WAREHOUSE_A WAREHOUSE_B
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq


def outputs(root: Path) -> dict[str, Path]:
    found = {}
    for sub in ("staging", "quarantine", "state"):
        for p in sorted((root / sub).rglob("*")) if (root / sub).exists() else []:
            if p.is_file():
                found[p.relative_to(root).as_posix()] = p
    for p in sorted((root / "runs").rglob("ingest.json")):
        found[p.relative_to(root).as_posix()] = p
    return found


def main() -> int:
    a, b = (Path(x) for x in sys.argv[1:3])
    fa, fb = outputs(a), outputs(b)
    differ = sorted(set(fa) ^ set(fb))
    for name in differ:
        print("only in one:", name)
    for name in sorted(set(fa) & set(fb)):
        pa_, pb_ = fa[name], fb[name]
        if name.endswith(".parquet"):
            ta, tb = pq.read_table(pa_), pq.read_table(pb_)
            if not ta.equals(tb):
                differ.append(name)
                print("differs:", name, ta.num_rows, tb.num_rows)
        elif name.endswith(".json"):
            if json.loads(pa_.read_text()) != json.loads(pb_.read_text()):
                differ.append(name)
                print("differs:", name)
        elif pa_.read_bytes() != pb_.read_bytes():
            differ.append(name)
            print("differs:", name)
    print(f"{len(set(fa) | set(fb))} files compared, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
