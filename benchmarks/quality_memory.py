"""Quality-stage time and peak RSS, two code versions on the same ingested nights (not run in CI).

For each size, a night from `--nights` (n<size>/extracts, n<size>/registry, read-only) is ingested
once with the baseline code into `--work`/wh<size>; then, `--repeat` times and alternating the
order, the quality stage (`run_night(ctx, stages=["quality"])`) runs on a fresh copy of that
warehouse with each code tree (a `git archive` of the revision) in its own subprocess, while this
process sums the RSS of that process tree every 0.2 s. The outputs of the two versions (findings
Parquet, manifest without its timings) are compared. Figures are reported as ratios against the
baseline measured in the same run, with the load average.

    .venv/bin/python benchmarks/quality_memory.py --sizes 10000 100000 --baseline main --candidate HEAD
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import psutil
from code_tree import code_tree

REPO = Path(__file__).resolve().parents[1]
NIGHT = "2026-11-26"
STAGE_SCRIPT = """
import datetime as dt, sys
from pathlib import Path
from transforms.core.context import make_context
from transforms.orchestration.pipeline import run_night
night, extracts, registry, warehouse, stage = sys.argv[1:6]
ctx = make_context(dt.date.fromisoformat(night), Path(extracts), Path(registry), Path(warehouse))
run_night(ctx, stages=[stage])
"""


def run_stage(tree: Path, stage: str, night_dir: Path, warehouse: Path, max_rss_mb: int) -> dict:
    """Run one stage in a subprocess with PYTHONPATH=tree; its seconds and peak RSS (process tree)."""
    args = [NIGHT, str(night_dir / "extracts"), str(night_dir / "registry"), str(warehouse), stage]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    load = os.getloadavg()
    started = time.perf_counter()
    proc = psutil.Popen([sys.executable, "-c", STAGE_SCRIPT, *args], env=env, cwd=tree)
    peak, stopped = 0, False
    while proc.poll() is None:
        total = 0
        with contextlib.suppress(psutil.NoSuchProcess):
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
        peak = max(peak, total)
        if total > max_rss_mb * 2**20 and not stopped:
            stopped = True  # the machine is shared: stop a run before it starves everyone else
            proc.kill()
        time.sleep(0.2)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(peak / 2**20),
        "returncode": proc.returncode,
        "stopped_over_rss_limit": stopped,
        "load_average_1_5_15": [round(x, 1) for x in load],
    }


def same_outputs(a: Path, b: Path) -> bool:
    """Do two warehouses hold the same quality findings, manifest (timings and paths aside) and
    report (the night's page and its CSVs of failing rows)?"""
    import pandas as pd

    def manifest(root: Path) -> dict:
        m = json.loads((root / "runs" / NIGHT / "quality.json").read_text())
        m.pop("seconds", None)
        m.pop("findings_path", None)
        return m

    findings = [
        pd.read_parquet(r / "quarantine" / "findings" / f"night={NIGHT}" / "quality.parquet") for r in (a, b)
    ]

    def report(root: Path) -> dict:
        page = root / "quality" / NIGHT
        return {
            p.relative_to(page).as_posix(): p.read_bytes()
            for p in [page / "index.html", *page.rglob("*.csv")]
        }

    return findings[0].equals(findings[1]) and manifest(a) == manifest(b) and report(a) == report(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--nights", type=Path, default=Path("/work/nights"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work/quality_memory"))
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--candidate", default="HEAD")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--max-rss-mb", type=int, default=8000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quality_memory.md"))
    args = parser.parse_args()
    command = "benchmarks/quality_memory.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    base_sha, base_tree = code_tree(args.baseline, work)
    cand_sha, cand_tree = code_tree(args.candidate, work)

    runs = []
    for size in args.sizes:
        night_dir = args.nights / f"n{size}"
        ingested = work / f"wh{size}"
        if not (ingested / "runs" / NIGHT / "ingest.json").exists():
            shutil.rmtree(ingested, ignore_errors=True)
            r = run_stage(base_tree, "ingest", night_dir, ingested, args.max_rss_mb)
            assert r["returncode"] == 0, r
            print(f"ingested {size} with {base_sha}: {r}", flush=True)
        outputs = {}
        for i in range(args.repeat):
            order = [(base_sha, base_tree), (cand_sha, cand_tree)]
            for sha, tree in order if i % 2 == 0 else order[::-1]:
                warehouse = work / f"run-{size}-{sha}"
                shutil.rmtree(warehouse, ignore_errors=True)
                shutil.copytree(ingested, warehouse)
                r = run_stage(tree, "quality", night_dir, warehouse, args.max_rss_mb)
                r.update(size=size, code=sha, repeat=i)
                print(json.dumps(r), flush=True)
                runs.append(r)
                outputs[sha] = warehouse
        identical = same_outputs(outputs[base_sha], outputs[cand_sha])
        runs.append({"size": size, "identical_outputs": identical})
        print(f"{size}: identical outputs {identical}", flush=True)

    def best(size: int, sha: str, key: str) -> float:
        return min(r[key] for r in runs if r.get("size") == size and r.get("code") == sha)

    lines = [
        "# Quality stage: time and peak RSS, baseline vs candidate",
        "",
        f"Command: `.venv/bin/python {command}` (run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{psutil.cpu_count()} cores). Baseline `{args.baseline}` = {base_sha}, candidate "
        f"`{args.candidate}` = {cand_sha}. Each run: the quality stage alone in a fresh subprocess on a "
        "copy of a warehouse ingested once; peak RSS of its process tree sampled every 0.2 s.",
        "",
        "| size | code | repeat | seconds | peak RSS MB | load average 1/5/15 at start |",
        "|---:|---|---:|---:|---:|---|",
        *[
            f"| {r['size']} | {r['code']} | {r['repeat']} | {r['seconds']} | {r['peak_rss_mb']} | "
            f"{r['load_average_1_5_15']} |"
            for r in runs
            if "code" in r
        ],
        "",
        "Ratios (best of the repeats, candidate / baseline, same run):",
        "",
    ]
    for size in args.sizes:
        identical = next(
            r["identical_outputs"] for r in runs if r.get("size") == size and "identical_outputs" in r
        )
        lines.append(
            f"- {size}: time x{best(size, cand_sha, 'seconds') / best(size, base_sha, 'seconds'):.2f}, "
            f"peak RSS x{best(size, cand_sha, 'peak_rss_mb') / best(size, base_sha, 'peak_rss_mb'):.2f}; "
            f"identical findings, manifest and report: {identical}"
        )
    if len(args.sizes) > 1:
        small, large = min(args.sizes), max(args.sizes)
        for sha in (base_sha, cand_sha):
            lines.append(
                f"- {sha}: peak RSS at {large} / at {small}: "
                f"x{best(large, sha, 'peak_rss_mb') / best(small, sha, 'peak_rss_mb'):.2f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(runs, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
