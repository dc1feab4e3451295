"""Fixed start-up costs of the stages (#19 item 3): each measured in a fresh interpreter.

Per stage: the import of its module (`transforms.orchestration.pipeline.STAGES`), and the fixed
pieces named in the issue: a Great Expectations ephemeral context (`expectations.runner.new_gx_context`),
a DuckDB connection and first query, the Splink import, the ingest process pool's first task.
Reported as seconds and as a share of the whole set, next to the interpreter's own start-up (so the
figures can be read on a loaded machine). Repeated `--repeat` times; the median is printed.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/stage_startup.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBES = {
    "interpreter (python -c pass)": "pass",
    "import pandas+pyarrow (shared by every stage)": "import pandas, pyarrow, pyarrow.parquet",
    "import transforms.orchestration.pipeline": "import transforms.orchestration.pipeline",
    "import ingest (transforms.ingest.stage)": "import transforms.ingest.stage",
    "import quality (expectations.runner)": "import expectations.runner",
    "import reconcile (transforms.reconcile.stage)": "import transforms.reconcile.stage",
    "import load (transforms.load.stage)": "import transforms.load.stage",
    "import snapshot (transforms.snapshot.stage)": "import transforms.snapshot.stage",
    "import great_expectations": "import great_expectations",
    "GX ephemeral context (after import)": (
        "import great_expectations; from expectations.runner import new_gx_context; T()\nnew_gx_context(None)"
    ),
    "import splink": "import splink",
    "DuckDB connect + first query (after import)": "import duckdb; T()\nduckdb.connect().execute('select 1').fetchall()",
    "ingest pool: fork 2 workers + first task (after import)": (
        "import transforms.ingest.stage as s, os; T()\n"
        "from transforms.ingest.common import _pool, IngestSettings\n"
        "with _pool(IngestSettings(), 2) as p: list(p.map(os.getpid, [], chunksize=1)); p.submit(abs, 1).result()"
    ),
}

# `T()` marks where the timed part starts (what comes before it is set-up, not measured).
TEMPLATE = """
import time
_t0 = time.perf_counter()
def T():
    global _t0
    _t0 = time.perf_counter()
{body}
print(time.perf_counter() - _t0)
"""


def measure(body: str) -> float:
    code = TEMPLATE.format(body=body)
    if body == "pass":  # the interpreter itself: wall time of the whole process
        import time

        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        return time.perf_counter() - t
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    a = parser.parse_args()
    figures = {}
    for name, body in PROBES.items():
        runs = [measure(body) for _ in range(a.repeat)]
        figures[name] = {"median_s": round(statistics.median(runs), 3), "runs": [round(r, 3) for r in runs]}
        print(f"{name:60s} {figures[name]['median_s']:7.3f} s  {figures[name]['runs']}", flush=True)
    figures["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
