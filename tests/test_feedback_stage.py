"""The feedback stage (expectations/feedback.py `feedback_night`): the hospitals' feedback files and
the failing rows' CSVs, written from the night's findings beside the load, then linked by the report."""

from __future__ import annotations

import csv
import json
import shutil

import pandas as pd
from conftest import GOLDEN_NIGHT

from expectations.feedback import read_night_outputs
from expectations.report import build_report

NIGHT = GOLDEN_NIGHT.isoformat()


def csv_rows(path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))[1:]


def written_files(warehouse) -> dict[str, bytes]:
    """The feedback CSV/JSON files and the failing rows' CSVs, by path under the warehouse (the XLSX
    is compared through its CSV twin: same rows)."""
    folders = (warehouse.feedback(GOLDEN_NIGHT), warehouse.quality / NIGHT / "failures")
    return {
        str(p.relative_to(warehouse.root)): p.read_bytes()
        for folder in folders
        for p in sorted(folder.iterdir())
        if p.suffix in (".csv", ".json")
    }


def test_the_stage_writes_every_facility_s_files_and_every_check_s_failing_rows(golden_run):
    warehouse = golden_run.ctx.warehouse
    outputs = read_night_outputs(warehouse, GOLDEN_NIGHT)
    ledger = json.loads(warehouse.ledger(GOLDEN_NIGHT).read_text())
    folder = warehouse.quarantine("findings", GOLDEN_NIGHT)
    quality = pd.read_parquet(folder / "quality.parquet")
    findings = pd.concat([pd.read_parquet(folder / "ingest.parquet"), quality])
    # every facility the ledger names got its three files, with one row per finding of it
    assert set(ledger["facilities"]) <= set(outputs["feedback_rows"])
    per_facility = findings.groupby("facility_code").size()
    for facility, rows in outputs["feedback_rows"].items():
        assert rows == per_facility.get(facility, 0)
        assert len(csv_rows(warehouse.feedback(GOLDEN_NIGHT) / f"{facility}.csv")) == rows
        for ext in ("xlsx", "json"):
            assert (warehouse.feedback(GOLDEN_NIGHT) / f"{facility}.{ext}").exists()
    assert sum(outputs["feedback_rows"].values()) > 0  # the golden night has failing records
    # every check that failed has its CSV with all its failing rows, linked from the night's page
    per_check = quality.groupby("check_id").size()
    assert set(outputs["failures"]) == set(per_check.index) and len(per_check)
    page = (warehouse.quality / NIGHT / "index.html").read_text()
    for check, link in outputs["failures"].items():
        assert len(csv_rows(warehouse.quality / NIGHT / link)) == per_check[check]
        assert f'href="{link}"' in page


def test_a_report_built_on_its_own_writes_what_the_stage_wrote(golden_run, tmp_path):
    """build_report without the feedback stage's record (a report rebuilt by hand) writes the same
    files itself: the stage moved the work, it did not change it."""
    ctx = golden_run.copy("snapshot", tmp_path / "wh")
    warehouse = ctx.warehouse
    before = written_files(warehouse)
    shutil.rmtree(warehouse.feedback(GOLDEN_NIGHT))
    shutil.rmtree(warehouse.quality / NIGHT / "failures")
    warehouse.manifest(GOLDEN_NIGHT, "feedback").unlink()
    build_report(warehouse, GOLDEN_NIGHT)
    after = written_files(warehouse)
    assert after.keys() == before.keys() and len(after) > 2
    assert after == before


def test_a_ledger_facility_the_stage_did_not_name_still_gets_its_files(golden_run, tmp_path):
    ctx = golden_run.copy("snapshot", tmp_path / "wh")
    warehouse = ctx.warehouse
    path = warehouse.manifest(GOLDEN_NIGHT, "feedback")
    outputs = json.loads(path.read_text())
    facility, rows = max(outputs["feedback_rows"].items(), key=lambda item: item[1])
    expected = (warehouse.feedback(GOLDEN_NIGHT) / f"{facility}.csv").read_bytes()
    del outputs["feedback_rows"][facility]
    path.write_text(json.dumps(outputs))
    for ext in ("xlsx", "csv", "json"):
        (warehouse.feedback(GOLDEN_NIGHT) / f"{facility}.{ext}").unlink()
    build_report(warehouse, GOLDEN_NIGHT)
    assert (warehouse.feedback(GOLDEN_NIGHT) / f"{facility}.csv").read_bytes() == expected
    assert rows > 0 and (warehouse.feedback(GOLDEN_NIGHT) / f"{facility}.xlsx").exists()
