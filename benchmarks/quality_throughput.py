"""Quality-stage throughput on a generated night (not run in CI).

Generates a night (or reuses one), runs the real ingest, then the quality stage, and reports:
validation time (reading staging included) and its share of ingest + quality; seconds per million
line-item rows (XML2-XML5); the split between the suites' vectorised rules, Great Expectations (validating one verdict column per
check, building the Data Docs) and the pandas row checks. The baseline, measured in the same
run on the same staged night, is reading every staged row from Parquet once (what any later stage
pays anyway).

    .venv/bin/python benchmarks/quality_throughput.py --encounters 100000 --facilities 20

Goals (issue): quality <= 25% of ingest + quality; <= 60 s per million line-item rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path

NIGHT = dt.date(2026, 11, 26)
LINE_DATASETS = ("drugs", "services", "lab_results", "clinical_course")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encounters", type=int, default=100_000)
    parser.add_argument("--facilities", type=int, default=20)
    parser.add_argument("--citizens", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work/quality"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quality_throughput.md"))
    args = parser.parse_args()
    command = "benchmarks/quality_throughput.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    from expectations.checks import load_checks
    from expectations.report import build_report
    from expectations.runner import StagedRows, validate_rows, write_quality
    from expectations.suites import DATASETS
    from transforms.core.context import make_context
    from transforms.core.parquet_io import read_staged_table
    from transforms.ingest.stage import ingest_night
    from transforms.synth.generate import generate_night

    extracts = args.work / f"night-{args.encounters}"
    if not (extracts / "truth" / "summary.json").exists():
        started = time.perf_counter()
        generate_night(
            extracts,
            NIGHT,
            facilities=args.facilities,
            encounters=args.encounters,
            citizens=args.citizens,
            seed=1,
        )
        print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
    ctx = make_context(
        NIGHT, extracts / "extracts", extracts / "registry", args.work / f"warehouse-{args.encounters}"
    )

    started = time.perf_counter()
    ingest_night(ctx)
    ingest_s = time.perf_counter() - started

    started = time.perf_counter()
    rows = {}
    for dataset in DATASETS:  # the baseline: reading every staged row once, one dataset at a time
        rows[dataset] = read_staged_table(ctx.warehouse, dataset, NIGHT).num_rows
    read_s = time.perf_counter() - started
    line_rows = sum(rows.get(ds, 0) for ds in LINE_DATASETS)

    config = load_checks()
    started = time.perf_counter()
    staged = StagedRows(ctx.warehouse, NIGHT)
    result = validate_rows(staged, NIGHT, config, data_docs_dir=ctx.warehouse.quality / "data_docs")
    validate_s = time.perf_counter() - started
    started = time.perf_counter()
    write_quality(ctx.warehouse, NIGHT, result, config)
    build_report(ctx.warehouse, NIGHT)
    write_s = time.perf_counter() - started
    quality_s = read_s + validate_s + write_s

    share = quality_s / (ingest_s + quality_s)
    per_million = quality_s / (line_rows / 1e6) if line_rows else float("nan")
    figures = {
        "encounters": rows.get("encounters", 0),
        "line_item_rows": line_rows,
        "rows_by_dataset": rows,
        "findings": len(result.findings),
        "ingest_s": round(ingest_s, 2),
        "read_staged_s (baseline)": round(read_s, 2),
        "validate_s": round(validate_s, 2),
        "  suite_rules_vectorised_s": round(result.suite_rules_seconds, 2),
        "  great_expectations_s (incl. its import)": round(result.gx_seconds, 2),
        "  row_checks_s": round(result.rows_seconds, 2),
        "write_findings_and_report_s": round(write_s, 2),
        "quality_total_s": round(quality_s, 2),
        "quality_share_of_ingest_plus_quality": round(share, 3),
        "quality_s_per_million_line_rows": round(per_million, 1),
        "validate_over_read_baseline": round(validate_s / read_s, 1) if read_s else None,
    }
    print(json.dumps(figures, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Quality stage throughput",
        "",
        f"Command: `.venv/bin/python {command}` (machine: 2 cores; night {NIGHT}).",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in figures.items()],
        "",
        f"Goals: quality <= 25% of ingest + quality (measured {share:.0%}); <= 60 s per million line-item "
        f"rows (measured {per_million:.1f} s).",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
