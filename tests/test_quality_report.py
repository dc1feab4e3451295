"""The nightly report: two tiny nights staged by hand, the quality stage run on them, the pages read
as data and rendered in headless Chromium."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from test_quality_frames import FACILITY, clean_encounter, staged, ts

from expectations.masking import mask_value
from expectations.report import (
    build_report,
    check_deltas,
    check_matrix,
    compare_nights,
    facility_scorecard,
    report_night,
)
from expectations.runner import data_docs_night, validate_night
from transforms.core.context import NightContext
from transforms.core.warehouse import Warehouse

NIGHT1 = dt.date(2026, 11, 25)
NIGHT2 = dt.date(2026, 11, 26)


def stage_encounters(warehouse: Warehouse, night: dt.date, rows: list[dict]) -> None:
    """Write staged encounters the way ingest lays them out (one folder per facility)."""
    frame = staged("encounters", rows)
    frame["night"] = night
    for facility, part in frame.groupby("facility_code"):
        folder = warehouse.staging_night("encounters", night) / f"facility_code={facility}"
        folder.mkdir(parents=True, exist_ok=True)
        pa.Table.from_pandas(part, preserve_index=False).to_pandas()
        part.reset_index(drop=True).to_parquet(folder / "part-0.parquet")


def context(warehouse: Warehouse, night: dt.date) -> NightContext:
    return NightContext(
        night, warehouse.root / "extracts", warehouse.root / "registry", warehouse, "sqlite://"
    )


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory) -> Warehouse:
    """Night 1: A invalid ICD, B discharge before admission, C clean.
    Night 2: A re-sent, still invalid (persisting); B re-sent, fixed (resolved); D new, invalid ICD
    at another facility; E clean, named with a 12-digit ID that disagrees with its sex (warning)."""
    warehouse = Warehouse(tmp_path_factory.mktemp("wh"))
    stage_encounters(
        warehouse,
        NIGHT1,
        [
            clean_encounter("A", main_icd10="A00.5"),
            clean_encounter("B", discharged_at=ts("2026-11-24 07:00"), admitted_at=ts("2026-11-24 08:00")),
            clean_encounter("C"),
        ],
    )
    validate_night(context(warehouse, NIGHT1))
    data_docs_night(context(warehouse, NIGHT1))  # Great Expectations and its Data Docs
    report_night(context(warehouse, NIGHT1))  # the report stage: no load ran, so no outcomes
    stage_encounters(
        warehouse,
        NIGHT2,
        [
            clean_encounter("A", main_icd10="A00.5", version=2),
            clean_encounter("B", version=2),
            clean_encounter("D", main_icd10="Q99.99", facility_code="79001"),
            clean_encounter("E", citizen_id="079190001234", patient_name="Trần Văn Bình"),
        ],
    )
    validate_night(context(warehouse, NIGHT2))
    data_docs_night(context(warehouse, NIGHT2))
    report_night(context(warehouse, NIGHT2))
    return warehouse


def test_every_night_has_its_page_and_the_root_page_is_the_latest(two_nights):
    root = two_nights.quality
    assert (root / NIGHT1.isoformat() / "index.html").exists()
    assert (root / NIGHT2.isoformat() / "index.html").exists()
    index = (root / "index.html").read_text()
    assert f"đêm {NIGHT2.isoformat()}" in index  # Vietnamese by default
    assert f'href="{NIGHT1.isoformat()}/index.html"' in index
    assert 'href="data_docs/index.html"' in index
    assert (root / "data_docs" / "index.html").exists()


def test_rebuilding_an_older_night_leaves_the_root_page_on_the_latest(two_nights):
    build_report(two_nights, NIGHT1)
    assert f"đêm {NIGHT2.isoformat()}" in (two_nights.quality / "index.html").read_text()


def test_the_csv_of_a_check_holds_all_its_failing_rows_masked(two_nights):
    folder = two_nights.quality / NIGHT2.isoformat() / "failures"
    icd = pd.read_csv(folder / "conformance.main_icd10_valid.csv", dtype=str)
    assert sorted(icd["encounter_id"]) == ["A", "D"]
    cid = pd.read_csv(folder / "plausibility.citizen_id_agrees.csv", dtype=str)
    assert cid["value"].tolist() == ["079*******34"]
    for csv in folder.glob("*.csv"):
        assert "079190001234" not in csv.read_text()


def test_the_comparison_finds_new_persisting_and_resolved_failures(two_nights):
    html = (two_nights.quality / NIGHT2.isoformat() / "index.html").read_text()
    # new: D (invalid ICD) and E (citizen ID warning); persisting: A; resolved: B
    assert "Mới đêm nay: 2, còn tồn tại: 1, đã khắc phục: 1." in html


def test_no_identity_appears_in_the_report_or_the_data_docs(two_nights):
    for page in two_nights.quality.rglob("*.html"):
        text = page.read_text(errors="ignore")
        assert "079190001234" not in text and "079090001234" not in text, page
        assert "Trần Văn Bình" not in text and "Nguyễn Văn An" not in text, page


def test_compare_nights_calls_resolved_only_what_was_resent():
    key = {"dataset": "encounters", "check_id": "x", "column": "c", "facility_code": "F"}
    previous = pd.DataFrame([{**key, "encounter_id": "A"}, {**key, "encounter_id": "B"}])
    tonight = pd.DataFrame([{**key, "encounter_id": "C"}])
    received = pd.DataFrame({"facility_code": ["F", "F"], "encounter_id": ["B", "C"], "version": [2, 1]})
    delta = compare_nights(tonight, previous, received)
    # A was not re-sent: neither resolved nor persisting; B was re-sent without its failure
    assert delta["new"]["encounter_id"].tolist() == ["C"]
    assert delta["resolved"]["encounter_id"].tolist() == ["B"]
    assert delta["persisting"].empty


def test_check_deltas_give_a_trend_per_facility_and_check():
    prev = pd.DataFrame({"facility_code": ["F", "F", "F"], "check_id": ["a", "a", "b"]})
    now = pd.DataFrame({"facility_code": ["F", "F"], "check_id": ["a", "c"]})
    trends = check_deltas(now, prev).set_index("check_id")["trend"].to_dict()
    assert trends == {"a": "better", "b": "resolved", "c": "new"}  # a: 2 -> 1, b: 1 -> 0, c: 0 -> 1


def test_the_matrix_counts_each_check_once_over_its_datasets():
    checks = pd.DataFrame(
        {
            "check_id": ["c1", "c1", "c2", "c3"],
            "category": ["conformance", "conformance", "conformance", "integrity"],
            "status": ["passed", "failed", "passed", "not_applicable"],
        }
    )
    matrix = check_matrix(checks)
    assert matrix["conformance"] == {"passed": 1, "failed": 1, "not_applicable": 0}
    assert matrix["integrity"] == {"passed": 0, "failed": 0, "not_applicable": 1}


def test_the_scorecard_uses_the_load_outcomes_when_they_exist():
    received = pd.DataFrame(
        {"facility_code": ["F"] * 3, "encounter_id": ["a", "b", "c"], "version": [1, 1, 1]}
    )
    findings = pd.DataFrame(
        {
            "facility_code": ["F", "F"],
            "encounter_id": ["a", "b"],
            "version": [1, 1],
            "severity": ["blocking", "warning"],
            "stage": ["quality", "quality"],
            "check_id": ["integrity.totals_match", "plausibility.weight_range"],
            "reason": ["totals_mismatch", "implausible_measurement"],
        }
    )
    before_load = facility_scorecard(received, findings, None, ["integrity.totals_match"]).iloc[0]
    assert (before_load.received, before_load.loaded, before_load.quarantined) == (3, 2, 1)
    assert before_load.quarantined_by_reason == {"totals_mismatch": 1}
    assert before_load.warning_rate == pytest.approx(1 / 3)
    outcomes = received.assign(
        outcome=["quarantined", "quarantined", "loaded"],
        reason=["totals_mismatch", "patient_not_in_registry", None],
    )
    after_load = facility_scorecard(received, findings, outcomes, []).iloc[0]
    assert (after_load.loaded, after_load.quarantined) == (1, 2)
    assert after_load.quarantined_by_reason == {"totals_mismatch": 1, "patient_not_in_registry": 1}
    # "loaded" as the ledger counts it: a superseded version is loaded too (and shown as superseded)
    resent = received.assign(
        outcome=["superseded", "quarantined", "loaded"], reason=[None, "patient_not_in_registry", None]
    )
    row = facility_scorecard(received, findings, resent, []).iloc[0]
    assert (row.received, row.loaded, row.superseded, row.quarantined) == (3, 2, 1, 1)
    assert row.received == row.loaded + row.quarantined


def test_masking_keeps_ids_recognisable_but_not_readable():
    assert mask_value("citizen_id", "079090001234") == "079*******34"
    assert mask_value("patient_name", "Nguyễn Văn An") == "N. V. A."
    assert mask_value("main_icd10", "A00.5") == "A00.5"


def test_the_report_renders_in_headless_chromium(two_nights, tmp_path):
    from lxml import html
    from test_report_pages import chromium_dom  # the one way the tests drive the browser

    tree = chromium_dom(two_nights.quality / "index.html", tmp_path)
    matrix_rows = tree.xpath('//table[@id="matrix"]/tbody/tr')
    assert [r.get("data-category") for r in matrix_rows] == [
        "conformance",
        "completeness",
        "plausibility",
        "integrity",
    ]
    failed = tree.xpath('//table[@id="matrix"]//tr[@data-category="conformance"]/td[@data-status="failed"]')[
        0
    ]
    assert int(failed.text_content()) >= 1  # main_icd10_valid failed tonight
    assert tree.xpath('//table[@id="province-table"]/tbody/tr/@data-province') == ["79", FACILITY[:2]]
    province = (two_nights.quality / NIGHT2.isoformat() / "province" / f"{FACILITY[:2]}.html").read_text()
    tree = html.fromstring(province)
    row = tree.xpath(f'//table[@id="scorecard"]/tbody/tr[@data-facility="{FACILITY}"]/td')
    # 94170 received A, B, E; A is quarantined (invalid ICD-10); E has a warning: 1 of 3
    assert [c.text_content().strip() for c in row[2:4]] == ["3", "2"]
    assert row[5].text_content().strip() == "1"
    assert row[7].text_content().strip() == "33,3%"  # Vietnamese decimal comma
    assert Path(two_nights.quality / "data_docs" / "index.html").exists()


def test_the_feedback_file_lists_each_failing_record_in_vietnamese_masked(two_nights):
    from openpyxl import load_workbook

    folder = two_nights.root / "feedback" / NIGHT2.isoformat()
    sheet = load_workbook(folder / f"{FACILITY}.xlsx", read_only=True).worksheets[0]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == ["MA_LK", "Lần gửi", "Bảng", "Trường", "Giá trị đã gửi", "Mã kiểm tra",
                       "Quy tắc bị vi phạm", "Mức độ", "Cách sửa"]  # fmt: skip
    by_encounter = {r[0]: r for r in rows[1:]}
    # A: invalid main ICD-10 (blocking); E: citizen ID disagrees with sex (warning, masked)
    assert by_encounter["A"][2:5] == ["XML1", "MA_BENH_CHINH", "A00.5"]
    assert by_encounter["A"][7].startswith("Chặn") and "MA_BENH_CHINH" in by_encounter["A"][8]
    assert by_encounter["E"][4] == "079*******34" and by_encounter["E"][7].startswith("Cảnh báo")
    as_json = json.loads((folder / f"{FACILITY}.json").read_text())
    as_csv = pd.read_csv(folder / f"{FACILITY}.csv", dtype=str, encoding="utf-8-sig")
    assert len(as_json["rows"]) == len(as_csv) == len(rows) - 1
    for path in folder.iterdir():
        assert "079190001234" not in path.read_bytes().decode("utf-8", errors="ignore")


def test_escape_formula_defuses_cells_excel_would_run():
    from transforms.core.csv_safe import escape_cell as escape_formula

    assert [escape_formula(v) for v in ["=1+1", "+7", "-3", "@SUM(A1)", "A00.5", 5]] == [
        "'=1+1",
        "'+7",
        "'-3",
        "'@SUM(A1)",
        "A00.5",
        5,
    ]


def test_a_facility_code_that_cannot_name_a_file_gets_no_feedback_file_but_is_counted(tmp_path):
    from expectations.feedback import write_night_feedback

    findings = pd.DataFrame(
        {
            "facility_code": ["../x", "79001"],
            "encounter_id": ["A", "B"],
            "version": [1, 1],
            "dataset": ["encounters", "encounters"],
            "row_index": [0, 1],
            "check_id": ["conformance.main_icd10_valid"] * 2,
            "severity": ["blocking"] * 2,
            "reason": ["invalid_icd10"] * 2,
            "column": ["main_icd10", "main_icd10"],
            "value": ["=HYPERLINK(1)", "A00.5"],
        }
    )
    warehouse = Warehouse(tmp_path / "wh")
    written = write_night_feedback(warehouse, NIGHT1, findings, ["../x", "79001"], {})
    assert written == {"": 1, "79001": 1}
    assert sorted(p.name for p in (tmp_path / "wh").rglob("*") if p.is_file()) == [
        "79001.csv",
        "79001.json",
        "79001.xlsx",
    ]


def test_a_feedback_value_xml_cannot_carry_still_gives_a_readable_workbook(tmp_path):
    """A FHIR value may hold a control character (JSON can, XML cannot): the XLSX shows U+FFFD
    there, the formula guard still applies, and the CSV and JSON keep the value as sent."""
    from openpyxl import load_workbook

    from expectations.feedback import write_feedback

    row = {
        k: None
        for k in ("ma_lk", "version", "table", "field", "value", "check_id", "rule", "severity", "fix")
    }
    rows = [row | {"ma_lk": "LK\x01", "version": 2, "value": '=HYPERLINK("x")'}]
    paths = write_feedback(tmp_path, "79001", rows, NIGHT2)
    sheet = load_workbook(paths["xlsx"], read_only=True).worksheets[0]
    values = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert values[1][:2] == ["LK\ufffd", 2]
    assert values[1][4] == '\'=HYPERLINK("x")'  # text, never a formula
    assert json.loads(paths["json"].read_text())["rows"][0]["ma_lk"] == "LK\x01"
