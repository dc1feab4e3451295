"""National-day benchmark: whole nights of 10k, 100k and 1M encounters through every stage.

For each size: generate the night once (timed separately, not part of the pipeline time), then run
the whole pipeline (`transforms.orchestration.pipeline.run_night`, every stage) in a fresh subprocess on a fresh
warehouse, then run the same night again on the same warehouse (unchanged input). SQLite serving
(the default) for every size; PostgreSQL (a fresh database, dropped afterwards) for the sizes in
--postgres-sizes. Reports per-stage wall time, throughput, peak RSS of the process tree (sampled
every 0.2 s), the re-run/first-run ratio and the scaling exponent log(t2/t1)/log(n2/n1) between
consecutive sizes.

    .venv/bin/python benchmarks/national_day/run.py --sizes 10000 100000 1000000 \
        --work benchmarks/work/national_day --out benchmarks/results/national_day.md --reuse

Results accumulate in <out>.json (one entry per size/backend/run, replaced when measured again), so
sizes can be run in separate invocations; the markdown table and <out>.png are rebuilt from all of
them after every run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE.parent))

from code_tree import code_tree  # noqa: E402
from generate_size import NIGHT, generate_size, is_generated, size_dir  # noqa: E402

STAGE_ORDER = ["ingest", "quality", "reconcile", "load", "ledger", "report", "snapshot"]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
# A fixed HMAC key for the snapshot stage, so the benchmark never creates ~/.config/healthbook.
BENCH_PSEUDONYM_KEY = "00" * 32
GOAL_SECONDS_1M = 15 * 60
GOAL_RSS_MB = 6 * 1024
GOAL_RERUN_RATIO = 0.20


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------


def create_database(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def snapshot_code(rev: str) -> tuple[Path, str]:
    """A clean copy of the committed tree at `rev` to run the pipeline from (benchmarks/code_tree.py)."""
    sha, code = code_tree(rev, WORK)
    return code, sha


def run_pipeline(size: int, warehouse: Path, serving_url: str | None, result_file: Path, log: Path) -> dict:
    """One run of the whole night in a fresh subprocess; its figures plus the parent's wall time."""
    data = size_dir(NIGHTS, size)
    cmd = [
        sys.executable,
        str(HERE / "run_once.py"),
        "--night",
        NIGHT.isoformat(),
        "--extracts",
        str(data / "extracts"),
        "--registry",
        str(data / "registry"),
        "--warehouse",
        str(warehouse),
        "--result",
        str(result_file),
    ]
    if serving_url:
        cmd += ["--serving-url", serving_url]
    if MAX_RSS_MB:
        cmd += ["--max-rss-mb", str(MAX_RSS_MB)]
    env = dict(os.environ, HEALTHBOOK_PSEUDONYM_KEY=BENCH_PSEUDONYM_KEY, PYTHONPATH=str(CODE))
    load_before = [round(x, 2) for x in os.getloadavg()]
    result_file.unlink(missing_ok=True)
    started = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n=== {dt.datetime.now():%F %T} {shlex.join(cmd)}\n")
        out.flush()
        rc = subprocess.run(cmd, cwd=CODE, env=env, stdout=out, stderr=out).returncode
    wall = time.perf_counter() - started
    result = (
        json.loads(result_file.read_text()) if result_file.exists() else {"error": f"exit {rc}, no result"}
    )
    result.update(
        commit=CODE_SHA,
        wall_seconds=round(wall, 2),
        exit_code=rc,
        load_average_1_5_15_at_start=load_before,
        measured_at=dt.datetime.now().isoformat(timespec="seconds"),
    )
    return result


def measure_size(size: int, backends: list[str], rerun: bool, results: dict, out: Path, log: Path) -> None:
    for backend in backends:
        warehouse = size_dir(WORK, size) / f"warehouse_{backend}"
        if warehouse.exists():
            shutil.rmtree(warehouse)
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        # one database per work folder: two engineers' benchmarks never share one
        db = f"hb_national_{size}_{hashlib.sha1(str(WORK).encode()).hexdigest()[:8]}"
        url = create_database(db) if backend == "postgresql" else None
        try:
            for run in ["first", "rerun"] if rerun else ["first"]:
                print(f"[{dt.datetime.now():%H:%M:%S}] size {size} {backend} {run} run ...", flush=True)
                r = run_pipeline(size, warehouse, url, warehouse.parent / f"result_{backend}_{run}.json", log)
                r.update(size=size, backend=backend, run=run)
                results["runs"][f"{size}/{backend}/{run}"] = r
                MEASURED_HERE.add(f"{size}/{backend}/{run}")
                save(results, out)
                print(
                    f"    total {r.get('total_seconds')} s, peak RSS {r.get('peak_rss_mb')} MB, "
                    f"error {r.get('error')}",
                    flush=True,
                )
                if r.get("error"):
                    break
        finally:
            if backend == "postgresql":
                drop_database(db)


# ------------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------------


def save(results: dict, out: Path) -> None:
    """Merge this invocation's entries into <out>.json (another size may be running in parallel and
    saving too), then rebuild the markdown and the plot from the merged figures."""
    path = out.with_suffix(".json")
    with open(WORK / "results.lock", "w") as lock:  # beside the nights, not in results/
        fcntl.flock(lock, fcntl.LOCK_EX)
        disk = json.loads(path.read_text()) if path.exists() else {}
        for section in ("runs", "generation"):
            mine = {k: v for k, v in results.get(section, {}).items() if k in MEASURED_HERE}
            disk.setdefault(section, {}).update(mine)
        disk["commands"] = list(dict.fromkeys([*disk.get("commands", []), *results.get("commands", [])]))
        disk["command"] = " ; ".join(disk["commands"])
        disk["png"] = results.get("png", disk.get("png"))
        results.update(disk)
        path.write_text(json.dumps(results, indent=2, sort_keys=True))
    out.write_text(render_markdown(results))
    plot(results, out.with_suffix(".png"))


def finished(run: dict) -> dict[str, float]:
    """Seconds of the stages a run finished (a stopped run's last stage is not a duration)."""
    return {k: v for k, v in run.get("stage_seconds", {}).items() if k != run.get("failed_stage")}


def scaling_exponent(t1: float, t2: float, n1: int, n2: int) -> float | None:
    if not t1 or not t2 or t1 <= 0 or t2 <= 0:
        return None
    return math.log(t2 / t1) / math.log(n2 / n1)


def fmt(x, digits: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}"


def render_markdown(results: dict) -> str:
    runs = sorted(
        results.get("runs", {}).values(),
        key=lambda r: (r["size"], r["backend"] != "sqlite", r["backend"], r["run"] != "first"),
    )
    gens = results.get("generation", {})
    lines = [
        "# National-day benchmark: whole nights through every stage",
        "",
        f"Command: `{results.get('command', '')}`  ",
        f"Machine: {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB RAM, "
        f"Python {platform.python_version()}; night {NIGHT}, 20 facilities, seed 42.  ",
        "The machine is shared: the load average (1/5/15 min) at the start and end of every run is "
        "in the table; read the figures with it (a load average above 2 means other jobs took CPU).",
        "",
        "## Generation (not part of the pipeline time)",
        "",
        "| encounters | registry rows | HOSO written | files | seconds | encounters/s | peak RSS MB | load avg at end |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size in sorted(gens, key=int):
        g = gens[size]
        a = g["arguments"]
        lines.append(
            f"| {int(size):,} | {a['citizens']:,} | {g['hoso_written']:,} | {g['files']:,} | {fmt(g['seconds'])} | "
            f"{fmt(int(size) / g['seconds'], 0)} | {fmt(g['peak_rss_mb'])} | {g.get('load_average_1_5_15')} |"
        )
    lines += [
        "",
        "## Pipeline runs: wall seconds per stage (fresh subprocess per run)",
        "",
        "`first` = fresh warehouse; `rerun` = the same night again on the same warehouse, input unchanged. "
        "encounters/s = planned encounters / total seconds. Peak RSS = the run's process tree "
        "(main + ingest pool workers), sampled every 0.2 s.",
        "",
        "| encounters | serving | run | "
        + " | ".join(STAGE_ORDER)
        + " | total s | encounters/s | peak RSS MB | "
        "re-run / first | load avg start → end | commit | error |",
        "|---:|---|---|" + "---:|" * len(STAGE_ORDER) + "---:|---:|---:|---:|---|---|---|",
    ]
    for r in runs:
        secs = r.get("stage_seconds", {})
        total = r.get("total_seconds")
        first = results["runs"].get(f"{r['size']}/{r['backend']}/first", {})
        ratio = (
            total / first["total_seconds"]
            if r["run"] == "rerun" and total and first.get("total_seconds")
            else None
        )
        lines.append(
            f"| {r['size']:,} | {r['backend']} | {r['run']} | "
            + " | ".join(fmt(secs.get(s)) for s in STAGE_ORDER)
            + f" | {'stopped' if r.get('error') else fmt(total)} | "
            f"{fmt(r['size'] / total, 0) if total and not r.get('error') else '—'} | {fmt(r.get('peak_rss_mb'))} | "
            f"{fmt(ratio, 2)} | {r.get('load_average_1_5_15_at_start')} → {r.get('load_average_1_5_15_at_end')} | "
            f"{r.get('commit', '')} | "
            f"{(r.get('failed_stage') or '') + ': ' + r['error'][:120] if r.get('error') else ''} |"
        )
    lines += [
        "",
        "## Peak RSS MB per stage",
        "",
        "| encounters | serving | run | " + " | ".join(STAGE_ORDER) + " |",
        "|---:|---|---|" + "---:|" * len(STAGE_ORDER),
    ]
    for r in runs:
        peaks = r.get("stage_peak_rss_mb", {})
        lines.append(
            f"| {r['size']:,} | {r['backend']} | {r['run']} | "
            + " | ".join(fmt(peaks.get(s)) for s in STAGE_ORDER)
            + " |"
        )
    # a run stopped part-way still gives the stages it finished (the stopped stage is left out)
    firsts = {r["size"]: r for r in runs if r["backend"] == "sqlite" and r["run"] == "first"}
    sizes = sorted(firsts)
    if len(sizes) > 1:
        lines += [
            "",
            "## Scaling exponent log(t2/t1) / log(n2/n1) between consecutive sizes (SQLite, first run)",
            "",
            "1.0 = linear; below 1 = fixed costs still dominate; above 1 = worse than linear.",
            "",
            "| sizes | " + " | ".join(STAGE_ORDER) + " | total | peak RSS |",
            "|---|" + "---:|" * (len(STAGE_ORDER) + 2),
        ]
        for n1, n2 in zip(sizes, sizes[1:], strict=False):
            a, b = firsts[n1], firsts[n2]
            cells = [
                fmt(scaling_exponent(finished(a).get(s), finished(b).get(s), n1, n2), 2) for s in STAGE_ORDER
            ]
            complete = not a.get("error") and not b.get("error")
            cells.append(
                fmt(scaling_exponent(a["total_seconds"], b["total_seconds"], n1, n2), 2) if complete else "—"
            )
            cells.append(
                fmt(scaling_exponent(a["peak_rss_mb"], b["peak_rss_mb"], n1, n2), 2) if complete else "—"
            )
            lines.append(f"| {n1:,} → {n2:,} | " + " | ".join(cells) + " |")
    lines += ["", "## Goals", ""]
    big = firsts.get(1_000_000) if not firsts.get(1_000_000, {}).get("error") else None
    big_rerun = results.get("runs", {}).get("1000000/sqlite/rerun")
    if big:
        t, m = big["total_seconds"], big["peak_rss_mb"]
        lines.append(
            f"- 1,000,000 encounters end to end <= 15 min: {t / 60:.1f} min — {'MET' if t <= GOAL_SECONDS_1M else 'NOT MET'}"
        )
        lines.append(f"- peak RSS <= 6 GB: {m:,} MB — {'MET' if m <= GOAL_RSS_MB else 'NOT MET'}")
    elif (stopped := firsts.get(1_000_000)) is not None:
        done_s = sum(finished(stopped).values())
        lines.append(
            f"- 1,000,000 encounters end to end <= 15 min, peak RSS <= 6 GB: NOT MET — the run stopped in "
            f"{stopped.get('failed_stage')} at {fmt(stopped.get('peak_rss_mb'))} MB; the stages before it took "
            f"{done_s / 60:.1f} min"
        )
    else:
        lines.append(
            "- 1,000,000 encounters end to end <= 15 min, peak RSS <= 6 GB: NOT MEASURED (no completed 1M run)"
        )
    for r in runs:
        if r["run"] == "rerun" and r.get("total_seconds"):
            first = results["runs"].get(f"{r['size']}/{r['backend']}/first", {})
            if first.get("total_seconds"):
                ratio = r["total_seconds"] / first["total_seconds"]
                lines.append(
                    f"- re-run of an unchanged night <= 20% of the first run ({r['size']:,}, {r['backend']}): "
                    f"{ratio:.0%} — {'MET' if ratio <= GOAL_RERUN_RATIO else 'NOT MET'}"
                )
    if big_rerun is None and big:
        lines.append("- re-run at 1,000,000: NOT MEASURED")
    lines += [
        "",
        f"Plot: `{Path(results.get('png', 'national_day.png')).name}`; findings: `national_day_findings.md`.",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results.get("runs", {}).values() if r["run"] == "first" and r["backend"] == "sqlite"]
    runs.sort(key=lambda r: r["size"])
    if not runs:
        return
    sizes = [r["size"] for r in runs]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    for stage in STAGE_ORDER:
        points = [(r["size"], finished(r)[stage]) for r in runs if finished(r).get(stage)]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=stage)
    done = [(r["size"], r["total_seconds"]) for r in runs if not r.get("error") and r.get("total_seconds")]
    if done:
        ax.plot(*zip(*done, strict=True), marker="s", color="black", linewidth=2, label="total")
        ax.plot(
            sizes, [done[0][1] * s / done[0][0] for s in sizes], "k:", label="linear from the first total"
        )
    ax.axhline(GOAL_SECONDS_1M, color="red", linestyle="--", label="goal at 1M: 15 min")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="encounters in the night",
        ylabel="wall seconds",
        title="Per-stage time against size (SQLite serving, first run)",
    )
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax2.plot(
        sizes,
        [r["peak_rss_mb"] for r in runs],
        marker="o",
        label="peak RSS (process tree, SQLite serving, first run)",
    )
    ax2.axhline(GOAL_RSS_MB, color="red", linestyle="--", label="goal: 6 GB")
    ax2.set(xscale="log", xlabel="encounters in the night", ylabel="MB", title="Peak RSS against size")
    ax2.legend(fontsize=8)
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    global WORK, NIGHTS, CODE, CODE_SHA, MAX_RSS_MB
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", required=True)
    parser.add_argument("--work", type=Path, required=True, help="where warehouses (and nights) go")
    parser.add_argument(
        "--nights",
        type=Path,
        default=None,
        help="read the generated nights (n<size>/) from here, read-only (default: --work)",
    )
    parser.add_argument("--out", type=Path, required=True, help="markdown result; .json and .png beside it")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse nights already generated with the same arguments"
    )
    parser.add_argument(
        "--postgres-sizes",
        type=int,
        nargs="*",
        default=None,
        help="sizes also run with PostgreSQL serving (default: the largest of --sizes)",
    )
    parser.add_argument("--no-rerun", action="store_true", help="skip the re-run of the unchanged night")
    parser.add_argument(
        "--render-only", action="store_true", help="rebuild the markdown and plot from <out>.json"
    )
    parser.add_argument(
        "--max-rss-mb",
        type=int,
        default=16 * 1024,
        help="stop a run whose process tree RSS passes this (the machine is shared); 0 = no limit",
    )
    parser.add_argument(
        "--code", default="HEAD", help="git revision whose committed tree runs the pipeline (default HEAD)"
    )
    a = parser.parse_args(argv)
    WORK = a.work.resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    NIGHTS = (a.nights or a.work).resolve()
    CODE, CODE_SHA = snapshot_code(a.code)
    MAX_RSS_MB = a.max_rss_mb
    pg_sizes = set(a.postgres_sizes if a.postgres_sizes is not None else [max(a.sizes)])
    json_path = a.out.with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    if a.render_only:
        save(results, a.out)
        return
    command = ".venv/bin/python " + shlex.join(
        [str(Path(sys.argv[0]).resolve().relative_to(REPO)), *sys.argv[1:]]
    )
    results.setdefault("commands", [])
    if command not in results["commands"]:
        results["commands"].append(command)
    results["command"] = " ; ".join(results["commands"])
    results["png"] = str(a.out.with_suffix(".png"))
    results.setdefault("runs", {})
    results.setdefault("generation", {})
    log = WORK / "runs.log"
    print("command:", command, flush=True)
    for size in a.sizes:
        if (a.reuse or NIGHTS != WORK) and is_generated(NIGHTS, size):
            record = json.loads((size_dir(NIGHTS, size) / "generation.json").read_text())
            print(f"size {size}: reusing the generated night ({record['seconds']} s to generate)", flush=True)
        else:
            if NIGHTS != WORK:
                raise SystemExit(f"no generated night of {size} encounters in {NIGHTS} (generate_size.py)")
            print(f"size {size}: generating ...", flush=True)
            record = generate_size(WORK, size)
        results["generation"][str(size)] = record
        MEASURED_HERE.add(str(size))
        backends = ["sqlite"] + (["postgresql"] if size in pg_sizes else [])
        save(results, a.out)
        measure_size(size, backends, not a.no_rerun, results, a.out, log)
    save(results, a.out)
    print(f"wrote {a.out}, {json_path}, {a.out.with_suffix('.png')}", flush=True)


WORK: Path = Path(".")
NIGHTS: Path = Path(".")
CODE: Path = REPO
CODE_SHA = ""
MAX_RSS_MB = 0
MEASURED_HERE: set[str] = set()  # the entries of <out>.json this invocation wrote

if __name__ == "__main__":
    main()
