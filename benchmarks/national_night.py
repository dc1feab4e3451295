"""A national night in its real shape (#19): one small file per encounter, every stage, against the bare parse.

For each size, on nights generated once by `national_day/generate_size.py` (the generator's default
layout: one encounter per file, sizes as in REAL_EXPORTS.md) and cached under `--work`:
  1. the bare parse of the night's files (lxml iterparse of every envelope, base64 decode and lxml
     parse of every inner table, in a fork pool of `--workers` processes, files in chunks so that
     the pool's own per-file cost stays out of it), timed with its peak RSS;
  2. for each serving backend: the whole pipeline (`national_day/run_once.py`, a fresh subprocess on
     a fresh warehouse, and for PostgreSQL a fresh database), then a re-run of the unchanged night;
  3. the bare parse again (the machine is shared: the two bare parses bracket the pipeline runs;
     `--bare-parse after` measures it only here, `none` not at all).
With `--ingest-only`, step 2 is the ingest stage alone, and with `--reference DIR` (another tree,
e.g. a `git worktree add --detach DIR <commit>`) it runs with that tree's code and with this
tree's, alternately, `--rounds` times each: a before/after measured in the same run. Ingest and
bare parse also report their CPU seconds (user + system of the process tree), which a shared
machine's load inflates less than wall seconds.
It prints per stage seconds and peak RSS (process tree, sampled every 0.2 s), the ingest / bare
parse ratio (against the mean of the two bare parses), the re-run / first ratio and the total
(`total_seconds` of run_once: in-process, after interpreter start-up, imports of the pipeline
included). Every run is appended to `<out>.jsonl`; `--out` (markdown) gets the table of this call.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/national_night.py --sizes 10000 100000 \\
        --serving sqlite postgresql://postgres@127.0.0.1:5432/hb_perf --out benchmarks/results/national_night.md
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "national_day"))
sys.path.insert(0, str(REPO))

from generate_size import NIGHT, TreePeakRss, ensure_size, size_dir  # noqa: E402

from transforms.orchestration.stages import NIGHT as NIGHT_STAGES  # noqa: E402  (declarations only, no pandas)

STAGES = [stage.name for stage in NIGHT_STAGES]  # the table's columns: every stage of the night
BENCH_PSEUDONYM_KEY = "00" * 32


# --- the bare parse ------------------------------------------------------------------------------


def night_files(extracts: Path) -> list[str]:
    """Every *.xml under the night's folder (os.scandir, no Path object per file)."""
    out: list[str] = []
    stack = [str(extracts)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.name.lower().endswith(".xml"):
                    out.append(e.path)
    out.sort()
    return out


# The envelope's and inner tables' namespace declarations. Real inner tables declare
# `xmlns:xsi="http://www.w3.org/2001/XMLSchema instance"` (a space: REAL_EXPORTS.md), which a strict
# parser rejects at the root tag: the bare parse as issued stops there, having read ~70 bytes of
# the table. `whole_tables` drops the declarations first, so that every table is parsed to its end,
# the work ingest cannot skip (ingest repairs the same declarations).
_NS_DECLS = re.compile(rb"""\sxmlns(?::[\w.-]+)?\s*=\s*(?:"[^"]*"|'[^']*')""")


def _bare_chunk(paths: list[str], whole_tables: bool = False) -> tuple[int, int, int, int]:
    """lxml parse of each envelope, base64 decode and lxml parse of every inner table: (HOSOs,
    bytes, inner tables parsed to their end, inner tables the parser rejected)."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    hosos = nbytes = parsed = rejected = 0
    for path in paths:
        nbytes += os.path.getsize(path)
        try:
            for _, el in etree.iterparse(
                path, tag="HOSO", resolve_entities=False, no_network=True, load_dtd=False
            ):
                for payload in el.iter("NOIDUNGFILE"):
                    try:
                        data = base64.b64decode(payload.text or "")
                        if whole_tables:
                            head = data[:512]
                            data = _NS_DECLS.sub(b"", head) + data[512:]
                        etree.fromstring(data, parser)
                        parsed += 1
                    except (ValueError, etree.XMLSyntaxError):
                        rejected += 1
                hosos += 1
                el.clear()
        except etree.XMLSyntaxError:
            pass  # a rejected file (truncated, DOCTYPE): ingest rejects it too
    return hosos, nbytes, parsed, rejected


def cpu_seconds() -> float:
    """User + system CPU of this process and of its reaped children (pools' workers, subprocesses)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bare_parse(extracts: Path, workers: int, whole_tables: bool = False) -> dict:
    """The bare parse of a night's files in a fork pool (`_bare_chunk`); `whole_tables`: every
    inner table read to its end (its namespace declarations dropped first)."""
    started, cpu = time.perf_counter(), cpu_seconds()
    with TreePeakRss(os.getpid()) as rss:
        files = night_files(extracts / NIGHT.isoformat())
        step = max(1, min(256, len(files) // (workers * 8) or 1))
        chunks = [files[i : i + step] for i in range(0, len(files), step)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
            counts = list(pool.map(_bare_chunk, chunks, [whole_tables] * len(chunks)))
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(cpu_seconds() - cpu, 2),
        "peak_rss_mb": round(rss.peak_bytes / 2**20),
        "files": len(files),
        "hosos": sum(c[0] for c in counts),
        "mb": round(sum(c[1] for c in counts) / 1e6, 1),
        "inner_parsed": sum(c[2] for c in counts),
        "inner_rejected": sum(c[3] for c in counts),
        "whole_tables": whole_tables,
    }


# --- the pipeline ----------------------------------------------------------------------------------


def fresh_database(url: str) -> str:
    """Drop and create the database named by `url` (through the server's `postgres` database)."""
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def run_pipeline(data: Path, warehouse: Path, serving_url: str | None, log: Path) -> dict:
    result_file = warehouse.parent / f"{warehouse.name}.result.json"
    cmd = [
        sys.executable,
        str(HERE / "national_day" / "run_once.py"),
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
    env = dict(os.environ, HEALTHBOOK_PSEUDONYM_KEY=BENCH_PSEUDONYM_KEY, PYTHONPATH=str(REPO))
    result_file.unlink(missing_ok=True)
    started = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n=== {dt.datetime.now():%F %T} {shlex.join(cmd)}\n")
        out.flush()
        rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=out).returncode
    wall = time.perf_counter() - started
    result = json.loads(result_file.read_text()) if result_file.exists() else {"error": f"exit {rc}"}
    result["wall_seconds_with_interpreter"] = round(wall, 2)
    return result


_INGEST_ONLY = """
import datetime as dt, json, sys, time
from pathlib import Path
from transforms.core.warehouse import Warehouse
from transforms.ingest.stage import ingest_extracts
started = time.perf_counter()
ingest_extracts(Path(sys.argv[1]), dt.date.fromisoformat(sys.argv[2]), Warehouse(Path(sys.argv[3])))
print(json.dumps({"ingest_s": time.perf_counter() - started}))
"""


def run_ingest_only(data: Path, warehouse: Path, code: Path = REPO) -> dict:
    """The ingest stage alone (ingest_extracts) with the code of tree `code`, in a fresh
    subprocess: its in-process seconds (imports excluded), the CPU seconds of its process tree
    (imports included) and the peak RSS of its process tree."""
    shutil.rmtree(warehouse, ignore_errors=True)
    cmd = [
        sys.executable,
        "-c",
        _INGEST_ONLY,
        str(data / "extracts" / NIGHT.isoformat()),
        NIGHT.isoformat(),
        str(warehouse),
    ]
    env = dict(os.environ, PYTHONPATH=str(code))
    cpu = cpu_seconds()
    child = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.PIPE, text=True)
    with TreePeakRss(child.pid) as rss:
        out, _ = child.communicate()
    cpu = cpu_seconds() - cpu
    if child.returncode:
        return {"error": f"exit {child.returncode}"}
    seconds = json.loads(out.strip().splitlines()[-1])["ingest_s"]
    return {
        "stage_seconds": {"ingest": round(seconds, 2)},
        "cpu_seconds": round(cpu, 2),
        "total_seconds": round(seconds, 2),
        "peak_rss_mb": round(rss.peak_bytes / 2**20),
        "stage_peak_rss_mb": {"ingest": round(rss.peak_bytes / 2**20)},
    }


def git_head(tree: Path = REPO) -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True)
    if head.returncode:  # not a git tree (e.g. a `git archive` of a commit): its folder's name
        return tree.name
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "transforms"], cwd=tree, capture_output=True, text=True
    )
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def row(entry: dict) -> str:
    s = entry.get("stage_seconds", {})
    rss = entry.get("stage_peak_rss_mb", {})
    cells = [
        f"{entry['size']:,}",
        entry["backend"],
        entry["run"],
        *(f"{s[k]:.1f}" if k in s else "—" for k in STAGES),
        f"{entry.get('total_seconds', 0):.1f}",
        f"{entry['bare_parse_s']:.1f}" if entry.get("bare_parse_s") else "—",
        f"{s['ingest'] / entry['bare_parse_s']:.2f}x"
        if "ingest" in s and entry["run"] != "rerun" and entry.get("bare_parse_s")
        else "—",
        f"{entry['rerun_ratio']:.3f}" if entry.get("rerun_ratio") is not None else "—",
        f"{entry.get('peak_rss_mb', 0):,}",
        " ".join(f"{k[:3]}:{rss[k]}" for k in STAGES if k in rss),
        str(entry.get("load_average_1_5_15_at_end")),
        entry["commit"],
        entry.get("error") or "",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| encounters | serving | run | "
    + " | ".join(STAGES)
    + " | total s | bare parse s | ingest / bare | re-run / first | peak RSS MB | peak RSS MB per stage | load avg at end | commit | error |\n"
    + "|---:|---|---|"
    + "---:|" * (len(STAGES) + 5)
    + "---|---|---|---|"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=HERE / "work" / "nights")
    parser.add_argument("--serving", nargs="+", default=["sqlite"], help="sqlite and/or postgresql:// URLs")
    parser.add_argument("--no-rerun", action="store_true")
    parser.add_argument(
        "--bare-parse",
        choices=["twice", "after", "none"],
        default="twice",
        help="before and after the pipeline runs (default), only after them (a 1M night's bare parse "
        "takes ~20 minutes on a shared machine), or not at all",
    )
    parser.add_argument("--ingest-only", action="store_true", help="the ingest stage alone, no other stage")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--tile-from",
        type=int,
        default=None,
        help="make larger sizes by tiling this generated size (national_day/tile_night.py)",
    )
    parser.add_argument("--out", type=Path, default=None, help="markdown file to append this call's table to")
    parser.add_argument(
        "--reference", type=Path, default=None, help="with --ingest-only: a tree to compare with"
    )
    parser.add_argument("--rounds", type=int, default=1, help="with --ingest-only: ingest runs per tree")
    parser.add_argument(
        "--whole-tables",
        action="store_true",
        help="also the bare parse that reads every inner table to its end (namespace declarations "
        "dropped first; the bare parse as issued stops at the malformed one), after the runs",
    )
    a = parser.parse_args(argv)
    commit = git_head()
    trees = [("this", REPO, commit)]
    if a.reference:
        trees.insert(0, ("reference", a.reference.resolve(), git_head(a.reference.resolve())))
    command = "PYTHONPATH=$PWD .venv/bin/python benchmarks/national_night.py " + shlex.join(sys.argv[1:])
    lines = []
    for size in a.sizes:
        data = size_dir(a.work, size)
        print(f"[{dt.datetime.now():%H:%M:%S}] making {size:,} unless it is there ...", flush=True)
        if made := ensure_size(a.work, size, a.tile_from):
            print(json.dumps(made), flush=True)
        bares = []
        if a.bare_parse == "twice":
            bares.append(bare_parse(data / "extracts", a.workers))
            print(f"[{dt.datetime.now():%H:%M:%S}] {size:,}: bare parse {bares[-1]}", flush=True)
        entries = []
        for _ in range(a.rounds if a.ingest_only else 0):
            for name, code, tree_commit in trees:  # alternately: the load drifts alike for both
                r = run_ingest_only(data, data / "warehouse_ingest_only", code)
                r["load_average_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
                r.update(size=size, backend="(ingest only)", run=name, commit=tree_commit)
                entries.append(r)
                print(
                    f"[{dt.datetime.now():%H:%M:%S}] {size:,} ingest only, {name}: {json.dumps(r)}",
                    flush=True,
                )
        for backend in [] if a.ingest_only else a.serving:
            name = "sqlite" if backend == "sqlite" else "postgresql"
            warehouse = data / f"warehouse_{name}"
            shutil.rmtree(warehouse, ignore_errors=True)
            url = None if backend == "sqlite" else fresh_database(backend)
            first_total = None
            for run in ["first"] if a.no_rerun else ["first", "rerun"]:
                r = run_pipeline(data, warehouse, url, data / "pipeline.log")
                r.update(size=size, backend=name, run=run, commit=commit)
                if run == "first":
                    first_total = r.get("total_seconds")
                elif first_total:
                    r["rerun_ratio"] = r.get("total_seconds", 0) / first_total
                entries.append(r)
                print(f"[{dt.datetime.now():%H:%M:%S}] {size:,} {name} {run}: {json.dumps(r)}", flush=True)
        if a.bare_parse != "none":
            bares.append(bare_parse(data / "extracts", a.workers))
            print(f"[{dt.datetime.now():%H:%M:%S}] {size:,}: bare parse after {bares[-1]}", flush=True)
        whole = None
        if a.whole_tables:
            whole = bare_parse(data / "extracts", a.workers, whole_tables=True)
            print(f"[{dt.datetime.now():%H:%M:%S}] {size:,}: bare parse, whole tables {whole}", flush=True)
        bare_s = sum(b["seconds"] for b in bares) / len(bares) if bares else None
        bare_cpu = sum(b["cpu_seconds"] for b in bares) / len(bares) if bares else None
        for r in entries:
            r["bare_parse_s"] = bare_s
            if "cpu_seconds" in r and bare_cpu:
                r["cpu_ratio"] = round(r["cpu_seconds"] / bare_cpu, 3)
            r["bare_parse"] = bares
            if whole is not None:
                r["bare_parse_whole_tables"] = whole
            r["command"] = command
            lines.append(row(r))
            if a.out:
                with open(a.out.with_suffix(".jsonl"), "a") as f:
                    f.write(json.dumps(r) + "\n")
        if a.out:  # every size as soon as it is measured (a long call may be stopped)
            rows = "\n".join(lines[-len(entries) :])
            when = f"{dt.datetime.now():%F %H:%M} UTC, {a.workers} workers"
            cpu = "".join(
                f"\n- {r['run']} ({r['commit']}): ingest CPU {r['cpu_seconds']:.1f} s / bare parse CPU "
                f"{bare_cpu:.1f} s = {r['cpu_ratio']:.2f}x"
                for r in entries
                if "cpu_ratio" in r
            )
            if bares:
                cpu += (
                    f"\n- the bare parse read {bares[-1]['inner_parsed']:,} inner tables to their end and "
                    f"stopped in {bares[-1]['inner_rejected']:,} (rejected by the strict parser)"
                )
            if whole is not None:
                cpu += "".join(
                    f"\n- {r['run']} ({r['commit']}): against the bare parse of whole tables "
                    f"({whole['inner_parsed']:,} read to their end, {whole['inner_rejected']:,} rejected): "
                    f"ingest {st['ingest']:.1f} s / {whole['seconds']:.1f} s = {st['ingest'] / whole['seconds']:.2f}x"
                    + (
                        f", CPU {r['cpu_seconds']:.1f} s / {whole['cpu_seconds']:.1f} s = "
                        f"{r['cpu_seconds'] / whole['cpu_seconds']:.2f}x"
                        if "cpu_seconds" in r
                        else ""
                    )
                    for r in entries
                    if "ingest" in (st := r.get("stage_seconds", {})) and r["run"] != "rerun"
                )
            with open(a.out, "a") as f:
                f.write(f"\n`{command}` ({when}), {size:,}:\n\n{HEADER}\n{rows}\n{cpu}\n")
    print(HEADER + "\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
