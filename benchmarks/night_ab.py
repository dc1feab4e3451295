"""Two code trees on the same small night, alternated (ABBA): wall and CPU of a whole night each.

Each run is `national_day/run_once.py` (`run_night` in a fresh interpreter on a fresh warehouse)
with PYTHONPATH naming the tree (a `git archive` of a commit, its `_cells` built or copied, or
this checkout). Wall is run_once's `total_seconds` (after interpreter start-up, the pipeline's
import included); CPU its `cpu_seconds` (the run's processes, user + system). On a shared, noisy
machine only the ratios of one call mean anything: the trees alternate A B B A ... so drift hits
both.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/night_ab.py --night /work/nights/n1000 \\
        --rounds 4 /tmp/ref-tree $PWD

`--night` is a generated night's folder (extracts/ and registry/ beside each other, as
`national_day/generate_size.py` writes them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "national_day"))

from generate_size import NIGHT  # noqa: E402

RUN_ONCE = HERE / "national_day" / "run_once.py"


def run_tree(tree: Path, night_dir: Path) -> dict:
    """run_once's figures of one night with `tree`'s code, in a fresh interpreter and warehouse."""
    with tempfile.TemporaryDirectory(prefix="night-ab-") as tmp:
        result = Path(tmp) / "result.json"
        subprocess.run(
            [
                sys.executable,
                str(RUN_ONCE),
                "--night",
                NIGHT.isoformat(),
                "--extracts",
                str(night_dir / "extracts"),
                "--registry",
                str(night_dir / "registry"),
                "--warehouse",
                f"{tmp}/wh",
                "--result",
                str(result),
            ],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            check=True,
        )
        return json.loads(result.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, type=Path, help="code trees, A then B")
    parser.add_argument("--night", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=4)
    a = parser.parse_args(argv)
    runs: dict[Path, list[dict]] = {tree: [] for tree in a.trees}
    for r in range(a.rounds):
        for tree in a.trees if r % 2 == 0 else a.trees[::-1]:
            runs[tree].append(run_tree(tree.resolve(), a.night.resolve()))
            print(
                f"{tree}: {runs[tree][-1]['total_seconds']} s, CPU {runs[tree][-1]['cpu_seconds']} s",
                flush=True,
            )
    medians = {}
    for tree, results in runs.items():
        medians[tree] = {
            k: statistics.median(r[k] for r in results) for k in ("total_seconds", "cpu_seconds")
        }
        walls = [r["total_seconds"] for r in results]
        print(
            f"{tree}: wall {walls}, median {medians[tree]['total_seconds']:.2f} s, "
            f"CPU median {medians[tree]['cpu_seconds']:.2f} s"
        )
    first, second = a.trees
    print(
        f"ratio {second} / {first}: wall {medians[second]['total_seconds'] / medians[first]['total_seconds']:.3f}, "
        f"CPU {medians[second]['cpu_seconds'] / medians[first]['cpu_seconds']:.3f}"
    )


if __name__ == "__main__":
    main()
