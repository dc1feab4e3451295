"""The quality stage reads the night in batches: the batch size changes its memory, never its results.

A whole-night run is `batch_rows` larger than any dataset (one batch per dataset, one group of
every facility partition for the cross-table checks); a tiny batch size cuts every dataset into
many batches and every facility partition into its own group.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
import pytest
from conftest import GOLDEN_NIGHT
from test_quality_checks import defect_night
from test_quality_frames import NIGHT

from expectations.checks import load_checks
from expectations.report import report_night
from expectations.row_checks import ROW_CHECK_COLUMNS, ROW_CHECKS
from expectations.runner import (
    KEY_COLUMNS,
    StagedRows,
    partition_groups,
    prepare_frame,
    validate_frames,
    validate_night,
)
from transforms.core.context import make_context

WHOLE = 10**9
OTHER_FACILITY = "01001"


def two_facility_night() -> dict[str, pd.DataFrame]:
    """The defect night with its encounters spread over two facilities, each encounter's line items
    and papers moving with it (so every cross-table relation of the night is kept)."""
    night = defect_night()
    for dataset, frame in night.items():
        key = "resource_id" if dataset == "immunizations" else "encounter_id"
        other = np.array([zlib.crc32(str(k).encode()) % 2 == 1 for k in frame[key]], dtype=bool)
        frame.loc[other, "facility_code"] = OTHER_FACILITY
    return night


def gx_statistics(result) -> dict:
    """Per dataset and check: what GX recorded (success and its counts: runner.gx_summary)."""
    return result.gx_results


def test_the_night_in_one_row_batches_gives_the_same_findings_checks_and_gx_results_as_one_batch():
    night = two_facility_night()
    assert set(night["encounters"]["facility_code"]) == {"94170", OTHER_FACILITY}
    whole = validate_frames(night, NIGHT, batch_rows=WHOLE)
    tiny = validate_frames(night, NIGHT, batch_rows=1)
    assert len(whole.findings) > 30  # every defect of the night, in both facilities
    assert set(whole.findings["facility_code"]) == {"94170", OTHER_FACILITY}
    pd.testing.assert_frame_equal(tiny.findings, whole.findings)
    pd.testing.assert_frame_equal(tiny.checks, whole.checks)
    assert gx_statistics(tiny) == gx_statistics(whole)
    assert len(gx_statistics(whole)) == 8  # one GX validation per dataset with rows


def test_great_expectations_on_the_verdict_files_gives_the_same_results_as_in_the_stage(tmp_path):
    """The quality stage writes each dataset's verdicts; the data_docs stage validates them beside
    the load: the findings and checks are the stage's, GX's results those of an in-process run."""
    from expectations.runner import FrameRows, validate_rows, validate_verdicts

    night = two_facility_night()
    here = validate_frames(night, NIGHT, batch_rows=WHOLE)
    folder = tmp_path / "verdicts"
    written = validate_rows(FrameRows(night), NIGHT, batch_rows=3, verdicts_dir=folder)
    pd.testing.assert_frame_equal(written.findings, here.findings)
    pd.testing.assert_frame_equal(written.checks, here.checks)
    assert written.gx_results == {}  # nothing validated by the quality stage itself
    assert len(list(folder.glob("*.parquet"))) == 8  # one per dataset with rows
    summary, errors, _seconds = validate_verdicts(folder, load_checks(), NIGHT, tmp_path / "docs")
    assert summary == gx_statistics(here) and errors == []
    assert (tmp_path / "docs" / "index.html").exists()
    # a second run of the stage replaces the folder: a dataset without verdicts tonight leaves none
    validate_rows(FrameRows({"encounters": night["encounters"]}), NIGHT, verdicts_dir=folder)
    assert [p.name for p in folder.glob("*.parquet")] == ["encounters.parquet"]


def test_a_great_expectations_failure_fails_the_data_docs_stage_not_the_quality_stage(tmp_path, monkeypatch):
    from expectations.runner import FrameRows, GxRun, validate_rows, validate_verdicts

    def broken(self, dataset, rules, verdicts):
        raise ZeroDivisionError(f"GX broke on {dataset}")

    monkeypatch.setattr(GxRun, "validate", broken)
    folder = tmp_path / "verdicts"
    result = validate_rows(FrameRows(two_facility_night()), NIGHT, verdicts_dir=folder)
    assert len(result.findings) > 30  # the quality stage, and so the load, never needed GX
    with pytest.raises(ZeroDivisionError, match="GX broke on"):
        validate_verdicts(folder, load_checks(), NIGHT, None)


def test_checks_great_expectations_could_not_validate_show_as_errors_in_the_report(tmp_path):
    from expectations.report import with_gx_errors

    checks = pd.DataFrame(
        {
            "check_id": ["a.b", "a.b", "c.d"],
            "dataset": ["encounters", "drugs", "encounters"],
            "status": ["passed"] * 3,
        }
    )
    manifest = tmp_path / "data_docs.json"
    assert with_gx_errors(checks.copy(), manifest).equals(checks)  # no data_docs run: unchanged
    manifest.write_text(json.dumps({"errors": [{"check_id": "a.b", "dataset": "drugs", "message": "boom"}]}))
    assert with_gx_errors(checks.copy(), manifest)["status"].tolist() == ["passed", "error", "passed"]


def test_a_rule_that_fails_on_one_batch_is_an_error_for_the_whole_night_without_findings():
    # quantity is text in the second row only: comparing it with 0 raises TypeError in its batch
    night = {"drugs": defect_night()["drugs"].astype({"quantity": "object"})}
    night["drugs"].loc[1, "quantity"] = "many"
    for batch_rows in (1, WHOLE):
        result = validate_frames(night, NIGHT, batch_rows=batch_rows)
        status = result.checks.set_index(["check_id", "dataset"])["status"]
        assert status[("plausibility.positive_quantity", "drugs")] == "error"
        assert "plausibility.positive_quantity" not in set(result.findings["check_id"])


@pytest.mark.parametrize("check_id", sorted(ROW_CHECKS))
def test_each_row_check_reads_only_the_datasets_and_columns_it_declares(check_id):
    config = load_checks()
    frames = {ds: prepare_frame(ds, f) for ds, f in defect_night().items()}
    full = ROW_CHECKS[check_id](frames, NIGHT, config[check_id])
    declared = ROW_CHECK_COLUMNS[check_id]
    cut = {
        # as the runner reads them: each column once (STT `line_number` is also a FHIR key column)
        ds: frames[ds][
            [c for c in dict.fromkeys((*KEY_COLUMNS, *columns, "_row_id")) if c in frames[ds].columns]
        ]
        for ds, columns in declared.items()
        if ds in frames
    }
    mine = ROW_CHECKS[check_id](cut, NIGHT, config[check_id])
    assert set(full.evaluated) <= set(declared)
    assert mine.evaluated == full.evaluated
    pd.testing.assert_frame_equal(
        mine.failures.reset_index(drop=True), full.failures.reset_index(drop=True), check_dtype=False
    )


def test_partitions_group_up_to_the_batch_size_and_a_larger_one_stands_alone():
    # 3 + 4 = 7 <= 8; 9 > 8 alone; 2 + 5 = 7
    parts = [("a", 3), ("b", 4), ("c", 9), ("d", 2), ("e", 5)]
    assert partition_groups(parts, 8) == [["a", "b"], ["c"], ["d", "e"]]
    assert partition_groups(parts, 1) == [["a"], ["b"], ["c"], ["d"], ["e"]]
    assert partition_groups([], 8) == []


@pytest.fixture(scope="module")
def ingested(golden_night, golden_run, tmp_path_factory):
    """The golden night after the real ingest (the session's golden run, conftest.GoldenRun), the
    warehouse copied once per batch size."""

    base = tmp_path_factory.mktemp("wh-batches")
    golden_run.copy("ingest", base / "ingested")
    return golden_night, base


def _stage_outputs(golden_night, base, name: str, batch_rows: int) -> dict:
    import shutil

    shutil.copytree(base / "ingested", base / name)
    ctx = make_context(GOLDEN_NIGHT, golden_night / "extracts", golden_night / "registry", base / name)
    manifest = json.loads(validate_night(ctx, batch_rows=batch_rows).read_text())
    report_night(ctx)  # the report stage, on what the quality stage wrote
    manifest.pop("seconds")
    manifest.pop("findings_path")
    findings = pd.read_parquet(ctx.warehouse.quarantine("findings", GOLDEN_NIGHT) / "quality.parquet")
    page = (ctx.warehouse.quality / GOLDEN_NIGHT.isoformat() / "index.html").read_text()
    csvs = {p.name: p.read_text() for p in (ctx.warehouse.quality / GOLDEN_NIGHT.isoformat()).rglob("*.csv")}
    return {"manifest": manifest, "findings": findings, "page": page, "csvs": csvs, "ctx": ctx}


def test_the_staged_night_in_tiny_batches_gives_the_same_findings_manifest_and_report(ingested):
    golden_night, base = ingested
    staged = StagedRows(
        make_context(GOLDEN_NIGHT, golden_night, golden_night, base / "ingested").warehouse, NIGHT
    )
    assert len(staged.partitions()) == 3  # the golden night's facilities
    whole = _stage_outputs(golden_night, base, "whole", WHOLE)
    tiny = _stage_outputs(golden_night, base, "tiny", 7)
    assert len(whole["findings"]) > 20
    pd.testing.assert_frame_equal(tiny["findings"], whole["findings"])
    assert tiny["manifest"] == whole["manifest"]
    assert tiny["csvs"] == whole["csvs"] and whole["csvs"]
    assert tiny["page"] == whole["page"]


def test_staged_batches_hold_at_most_batch_rows_rows_and_number_every_row_once(ingested):
    golden_night, base = ingested
    warehouse = make_context(GOLDEN_NIGHT, golden_night, golden_night, base / "ingested").warehouse
    staged = StagedRows(warehouse, NIGHT)
    for dataset in ("encounters", "drugs", "immunizations"):
        sizes, ids = [], []
        for frame in staged.batches(dataset, ["encounter_id", "facility_code"], 7):
            sizes.append(len(frame))
            ids.append(frame["_row_id"].to_numpy())
        total = sum(n for _, _, n in staged.files[dataset])
        assert total > 7 * 3  # several batches, spanning the facilities' files
        assert max(sizes) == 7 and min(sizes) >= 1
        assert np.array_equal(np.concatenate(ids), np.arange(total))


def test_the_cross_table_checks_beside_the_datasets_give_the_same_findings_and_checks(tmp_path, monkeypatch):
    """The stage runs the cross-table checks in a forked process beside the datasets' loop: the
    same findings, in the same order, and the same checks as one process."""
    import multiprocessing

    from expectations import runner

    night = two_facility_night()
    beside = runner.validate_rows(runner.FrameRows(night), NIGHT, batch_rows=3, verdicts_dir=tmp_path / "a")
    monkeypatch.setattr(runner, "can_fork", lambda: False)
    here = runner.validate_rows(runner.FrameRows(night), NIGHT, batch_rows=3, verdicts_dir=tmp_path / "b")
    assert beside.findings["check_id"].isin(list(runner.CROSS_TABLE_CHECKS)).any()  # some came from it
    pd.testing.assert_frame_equal(beside.findings, here.findings)
    pd.testing.assert_frame_equal(beside.checks, here.checks)
    assert multiprocessing.active_children() == []


def test_a_cross_table_check_failing_beside_the_datasets_fails_the_stage(monkeypatch, tmp_path):
    import multiprocessing

    from expectations import runner

    def broken(rows, cross, config, night, batch_rows):
        raise ZeroDivisionError("cross-table broke")

    monkeypatch.setattr(runner, "_cross_table_checks", broken)  # inherited by the forked process
    with pytest.raises(RuntimeError, match="cross-table checks failed") as raised:
        runner.validate_rows(runner.FrameRows(two_facility_night()), NIGHT, verdicts_dir=tmp_path / "v")
    assert "ZeroDivisionError: cross-table broke" in str(raised.value)
    assert multiprocessing.active_children() == []
