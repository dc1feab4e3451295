"""The facilities' feedback rows of a night built by two trees' `expectations/feedback.py`: the same
rows in the same order, and the seconds each took (issue #19, session 12: one dict per finding
against the pandas frame).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/feedback_rows.py \\
        --findings /work/nights/n1000000/warehouse_postgresql/quarantine/findings/night=2026-11-26 \\
        --reference /tmp/ref-base   # a `git archive` of 21ce35a (its `_rows_by_facility`)

This checkout's rows come from `_FeedbackRows.of` (one facility at a time, as the feedback stage
builds them); the reference's from its `_rows_by_facility` (every facility at once).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from pathlib import Path

import pandas as pd

import expectations.feedback as this
from expectations.checks import load_checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--findings", type=Path, required=True, help="a night's quarantine/findings folder")
    parser.add_argument("--reference", type=Path, required=True, help="a tree with the dict-per-row builder")
    a = parser.parse_args()
    descriptions = {c.id: c.description for c in load_checks().checks.values()}
    findings = pd.concat(
        [pd.read_parquet(a.findings / f"{stage}.parquet") for stage in ("ingest", "quality")],
        ignore_index=True,
    ).reindex(columns=this.CSV_COLUMNS)
    spec = importlib.util.spec_from_file_location(
        "reference_feedback", a.reference / "expectations" / "feedback.py"
    )
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)

    started = time.perf_counter()
    before = reference._rows_by_facility(findings, descriptions, by="facility_code")
    before_s = time.perf_counter() - started
    started = time.perf_counter()
    masked, make = this.mask_findings(findings), this._FeedbackRows(descriptions)
    after = {
        facility: this._records(make.of(masked.iloc[rows]))
        for facility, rows in masked.groupby("facility_code", sort=False).indices.items()
    }
    after_s = time.perf_counter() - started

    def plain(row: dict) -> dict:
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}

    same = before.keys() == after.keys() and all([plain(r) for r in before[f]] == after[f] for f in before)
    rows = sum(map(len, before.values()))
    print(f"{len(before)} facilities, {rows:,} rows; identical: {same}")
    print(
        f"reference {before_s:.1f} s, this {after_s:.1f} s ({after_s / before_s:.2f}x; this includes the dicts)"
    )


if __name__ == "__main__":
    main()
