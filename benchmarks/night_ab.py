"""Two code trees on the same small night, alternated (ABBA): wall and CPU of a whole night each.

Each run is `run_night` in a fresh interpreter on a fresh warehouse, with PYTHONPATH naming the
tree (a `git archive` of a commit, its `_cells` built or copied, or this checkout). Wall is from
before the pipeline's import to the night's end (the interpreter's own start-up excluded); CPU
is this run's and its children's (user + system). On a shared, noisy machine only the ratios of
one call mean anything: the trees alternate A B B A ... so drift hits both.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/night_ab.py --night /work/nights/n1000 \\
        --rounds 4 /tmp/ref-tree $PWD

`--night` is a generated night's folder (extracts/ and registry/ beside each other, as
`national_day/generate_size.py` writes them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NIGHT = dt.date(2026, 11, 26)


def run_once(night_dir: Path, warehouse: Path) -> dict:
    """One night in this process (the child's side): seconds from before the import, CPU, stages."""
    started = time.perf_counter()
    from transforms.core.context import make_context
    from transforms.orchestration.pipeline import run_night

    ctx = make_context(NIGHT, night_dir / "extracts", night_dir / "registry", warehouse, None)
    summary = run_night(ctx)
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "cpu_seconds": round(own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime, 3),
        "stages": {t.stage: round(t.seconds, 3) for t in summary.stages},
    }


def run_tree(tree: Path, night_dir: Path) -> dict:
    """One night with `tree`'s code, in a fresh interpreter and warehouse."""
    with tempfile.TemporaryDirectory(prefix="night-ab-") as tmp:
        done = subprocess.run(
            [sys.executable, __file__, "--once", "--night", str(night_dir), "--warehouse", f"{tmp}/wh"],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, help="code trees, A then B")
    parser.add_argument("--night", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", type=Path, help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.once:
        shutil.rmtree(a.warehouse, ignore_errors=True)
        print(json.dumps(run_once(a.night, a.warehouse)))
        return
    if len(a.trees) != 2:
        parser.error("name two trees")
    runs: dict[Path, list[dict]] = {tree: [] for tree in a.trees}
    for r in range(a.rounds):
        for tree in a.trees if r % 2 == 0 else a.trees[::-1]:
            runs[tree].append(run_tree(tree.resolve(), a.night.resolve()))
            print(f"{tree}: {runs[tree][-1]}", flush=True)
    medians = {}
    for tree, results in runs.items():
        medians[tree] = {k: statistics.median(r[k] for r in results) for k in ("seconds", "cpu_seconds")}
        walls = [r["seconds"] for r in results]
        print(
            f"{tree}: wall {walls}, median {medians[tree]['seconds']:.2f} s, CPU median {medians[tree]['cpu_seconds']:.2f} s"
        )
    first, second = a.trees
    print(
        f"ratio {second} / {first}: wall {medians[second]['seconds'] / medians[first]['seconds']:.3f}, "
        f"CPU {medians[second]['cpu_seconds'] / medians[first]['cpu_seconds']:.3f}"
    )


if __name__ == "__main__":
    main()
