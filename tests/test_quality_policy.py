"""The blocking policy (issue 15): checks.yaml blocks only for what HEALTHBOOK.md lists, every check
says why, and the new warning checks do what their rule says on tiny hand-made frames."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_quality_frames import NIGHT, clean_encounter, staged, ts

from expectations.checks import BLOCKING_POLICY, CHECKS_FILE, load_checks
from expectations.row_checks import ROW_CHECKS
from expectations.runner import prepare_frame
from transforms.core import reasons
from transforms.core.icd10 import resolve_main_icd10

README = (Path(__file__).parents[1] / "expectations" / "README.md").read_text(encoding="utf-8")
HEALTHBOOK_BLOCKING = {
    # HEALTHBOOK.md "When an encounter is complete": what may keep an encounter out of the book
    "missing_xml1",
    "missing_encounter_id",
    "missing_required_field",
    "discharge_before_admission",
    "date_after_night",
    "invalid_icd10",
    "missing_discharge_paper",  # late tables: within the grace period
    "missing_summary",
}
MONEY_REASONS = {"totals_mismatch", "totals_identity_mismatch", "line_amount_mismatch"}


def test_every_blocking_check_blocks_for_a_reason_healthbook_allows():
    config = load_checks()
    assert set(BLOCKING_POLICY) == HEALTHBOOK_BLOCKING
    blocking = {c.id: c.reason for c in config.checks.values() if c.is_blocking}
    assert blocking, "the policy still blocks what makes a book wrong"
    assert {cid: r for cid, r in blocking.items() if r not in BLOCKING_POLICY} == {}


def test_money_catalogue_codes_lengths_and_secondary_codes_only_warn():
    config = load_checks()
    for check in config.checks.values():
        if check.reason in MONEY_REASONS or check.reason in ("code_not_in_list", "value_too_long"):
            assert check.severity == "warning", check.id
    assert config["conformance.secondary_icd10_valid"].severity == "warning"
    assert "totals_mismatch" in reasons.WARNING_REASONS and "totals_mismatch" not in reasons.ENCOUNTER_REASONS


def test_every_check_says_why_in_terms_of_the_book():
    for check in load_checks().checks.values():
        assert len(check.why) > 15, check.id


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(CHECKS_FILE.read_text(encoding="utf-8"))
    mutate({c["id"]: c for c in raw["checks"]})
    path = tmp_path / "checks.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_a_blocking_money_check_is_refused(tmp_path):
    def block_money(checks):
        checks["integrity.drugs_total_sum"]["severity"] = "blocking"

    with pytest.raises(ValueError, match="may not block"):
        load_checks(_write(tmp_path, block_money))


def test_a_check_without_why_is_refused(tmp_path):
    def drop_why(checks):
        del checks["plausibility.weight_range"]["why"]

    with pytest.raises(ValueError, match="`why` is missing"):
        load_checks(_write(tmp_path, drop_why))


def test_the_readme_table_gives_every_check_with_its_severity_and_reason():
    rows = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(
            r"\| `([a-z_]+\.[a-z0-9_]+)` \| [^|]+ \| (blocking|warning) \| ([a-z0-9_]+) \|", README
        )
    }
    config = load_checks()
    assert {cid: (c.severity, c.reason) for cid, c in config.checks.items()} == rows


# --- the new checks on tiny frames (the check functions themselves, with their checks.yaml policy) ------


def run(check_id: str, frames: dict[str, pd.DataFrame]):
    prepared = {ds: prepare_frame(ds, frame) for ds, frame in frames.items()}
    return ROW_CHECKS[check_id](prepared, NIGHT, load_checks()[check_id])


def test_treatment_days_follow_the_annex_formula_per_visit_type():
    # admitted 11-20 08:00, discharged 11-25 10:00: 25 - 20 + 1 = 6 calendar days
    stay = {"admitted_at": ts("2026-11-20 08:00"), "discharged_at": ts("2026-11-25 10:00")}
    encounters = staged(
        "encounters",
        [
            clean_encounter("IN6", visit_type="03", treatment_days=6, **stay),  # formula: ok
            clean_encounter("IN5", visit_type="03", treatment_days=5, **stay),  # bad
            clean_encounter("DAY6", visit_type="04", treatment_days=6, **stay),  # ok
            clean_encounter("EX0", visit_type="01", treatment_days=0),  # examination: 0 ok
            clean_encounter("EX1", visit_type="01", treatment_days=1),  # same day: formula 1 ok
            clean_encounter("EX2", visit_type="01", treatment_days=2),  # bad
            clean_encounter("U4H", visit_type="09", treatment_days=1),  # "09" must be 0: bad
            clean_encounter("OUT3", visit_type="02", treatment_days=3, **stay),  # 3 <= 6 ok
            clean_encounter("OUT7", visit_type="02", treatment_days=7, **stay),  # 7 > 6 bad
            clean_encounter("DRG", visit_type="05", treatment_days=90),  # days of drugs: not checked
            clean_encounter("NUL", visit_type="03", **stay),  # no SO_NGAY_DTRI: not checked
        ],
    )
    out = run("plausibility.treatment_days", {"encounters": encounters})
    failing = encounters.loc[out.failures["_row_id"], "encounter_id"].tolist()
    assert failing == ["IN5", "EX2", "U4H", "OUT7"]
    assert out.evaluated == {"encounters": 9}
    assert out.failures["value"].iloc[0] == "SO_NGAY_DTRI=5 vs NGAY_RA-NGAY_VAO+1=6 (MA_LOAI_KCB 03)"


def test_a_result_may_come_after_discharge_but_an_order_may_not():
    # clean_encounter: admitted 11-25 08:15, discharged 10:40
    encounters = staged("encounters", [clean_encounter("A")])
    services = staged(
        "services",
        [
            {
                "encounter_id": "A",
                "ordered_at": ts("2026-11-25 09:00"),
                "resulted_at": ts("2026-11-26 08:00"),
            },
            {"encounter_id": "A", "ordered_at": ts("2026-11-25 11:00")},  # after discharge: bad
            {
                "encounter_id": "A",
                "ordered_at": ts("2026-11-25 09:00"),
                "performed_at": ts("2026-11-25 08:00"),
            },
        ],
    )
    out = run("plausibility.line_within_stay", {"encounters": encounters, "services": services})
    assert sorted(zip(out.failures["_row_id"], out.failures["column"], strict=True)) == [
        (1, "ordered_at"),
        (2, "performed_at"),  # before admission 08:15
    ]
    order = run("plausibility.line_time_order", {"services": services})
    assert order.failures[["_row_id", "column", "value"]].values.tolist() == [
        [2, "performed_at", "NGAY_TH_YL=202611250800 < NGAY_YL=202611250900"]
    ]


def test_a_duplicate_claim_needs_the_same_facility_card_dates_and_main_code():
    card = {"insurance_card": ["DN4797909999999"]}
    encounters = staged(
        "encounters",
        [
            clean_encounter("A", **card),
            clean_encounter("B", **card, main_icd10="I10"),  # same as A: both listed
            clean_encounter("C", **card, facility_code="79001"),  # other facility
            clean_encounter("D", **card, main_icd10="E11"),  # other main code
            clean_encounter("A", **card, version=2),  # A's re-send is A, not a duplicate
        ],
    )
    out = run("integrity.duplicate_claim", {"encounters": encounters})
    rows = encounters.loc[out.failures["_row_id"], ["encounter_id", "version"]].values.tolist()
    assert rows == [["A", 1], ["B", 1], ["A", 2]]
    assert out.failures["value"].tolist() == [
        "same card, dates and main code as " + x for x in ("B", "A", "B")
    ]


def test_stt_is_unique_per_table_and_version_only():
    drugs = staged(
        "drugs",
        [
            {"encounter_id": "A", "line_number": 1},
            {"encounter_id": "A", "line_number": 2},
            {"encounter_id": "A", "line_number": 2},  # duplicate within A v1
            {"encounter_id": "A", "line_number": 1, "version": 2},  # another version: fine
            {"encounter_id": "B", "line_number": 1},  # another encounter: fine
        ],
    )
    services = staged("services", [{"encounter_id": "A", "line_number": 1}])  # another table: fine
    out = run("conformance.unique_line_number", {"drugs": drugs, "services": services})
    assert out.failures[["dataset", "_row_id"]].values.tolist() == [["drugs", 1], ["drugs", 2]]


def test_paper_demographics_compare_names_without_case_or_spaces_and_show_no_personal_data():
    encounters = staged("encounters", [clean_encounter("A"), clean_encounter("B")])
    follow_ups = staged(
        "follow_ups",
        [
            # A: "Nguyễn Văn An" in other case and spacing, same birth and sex: equal
            {
                "encounter_id": "A",
                "patient_name": " NGUYỄN  văn an",
                "birth_date": dt.date(1990, 3, 14),
                "sex_code": "1",
            },
            {
                "encounter_id": "B",
                "patient_name": "Nguyễn Văn An",
                "birth_date": dt.date(1991, 3, 14),
                "sex_code": "2",
            },
        ],
    )
    out = run("conformance.paper_demographics", {"encounters": encounters, "follow_ups": follow_ups})
    assert out.failures[["_row_id", "column", "value"]].values.tolist() == [
        [1, "birth_date", "XML14 NGAY_SINH differs from XML1"],
        [1, "sex_code", "XML14 GIOI_TINH differs from XML1"],
    ]


def test_the_main_code_comes_from_xml7_only_when_xml1_has_none_that_is_valid():
    encounters = staged(
        "encounters",
        [
            clean_encounter("OK", main_icd10="S72.00"),  # valid fifth character: XML1 kept
            clean_encounter("EMPTY", main_icd10=None),  # XML7 MA_BENH_CHINH
            clean_encounter("BAD", main_icd10="A00.5"),  # XML7 text starts with its code
            clean_encounter("NONE", main_icd10=None),  # XML7 without any code: unresolved
        ],
    )
    papers = staged(
        "discharge_papers",
        [
            {"encounter_id": "OK", "main_icd10": "I10"},
            {"encounter_id": "EMPTY", "main_icd10": "s7201", "discharge_diagnosis": "Gãy hở cổ xương đùi"},
            {"encounter_id": "BAD", "discharge_diagnosis": "A09 - Tiêu chảy"},
            {"encounter_id": "NONE", "discharge_diagnosis": "Tiêu chảy"},
        ],
    )
    resolved = resolve_main_icd10(encounters, papers)
    assert resolved[["main_icd10", "main_icd10_source"]].values.tolist() == [
        ["S72.00", "xml1"],
        ["S72.01", "xml7"],
        ["A09", "xml7"],
        [None, None],
    ]
    frames = {"encounters": encounters, "discharge_papers": papers}
    assert run("conformance.main_icd10_valid", frames).failures.empty  # BAD is recovered
    missing = run("completeness.main_diagnosis_present", frames).failures
    assert encounters.loc[missing["_row_id"], "encounter_id"].tolist() == ["NONE"]
    warned = run("conformance.main_icd10_from_xml7", frames).failures
    assert warned["value"].tolist() == [
        "XML1 MA_BENH_CHINH= -> XML7 S72.01",
        "XML1 MA_BENH_CHINH=A00.5 -> XML7 A09",
    ]


def test_a_retired_code_warns_for_main_and_secondary():
    encounters = staged(
        "encounters",
        [clean_encounter("A", main_icd10="D75.2", secondary_icd10=["N18.8", "I10"]), clean_encounter("B")],
    )
    out = run("conformance.icd10_retired", {"encounters": encounters})
    assert out.failures[["_row_id", "column", "value"]].values.tolist() == [
        [0, "main_icd10", "D75.2"],
        [0, "secondary_icd10", "N18.8"],
    ]


def test_the_book_leaves_out_a_malformed_secondary_code_and_keeps_a_retired_one():
    from transforms.load.assemble import diagnosis_rows, with_main_diagnosis

    encounters = staged(
        "encounters",
        [
            clean_encounter(
                "A", main_icd10="", secondary_icd10=["E11.9", "Q99.99", "N18.8"], discharge_diagnosis=None
            )
        ],
    )
    encounters["main_icd10"] = None  # XML1 sent no main code
    papers = staged(
        "discharge_papers", [{"encounter_id": "A", "main_icd10": "S72.00", "discharge_diagnosis": "Gãy"}]
    )
    published = encounters[["facility_code", "encounter_id", "version"]]
    rows = diagnosis_rows(with_main_diagnosis(encounters, papers), published)
    # Q99.99 is not on the national list: warned (conformance.secondary_icd10_valid), not shown
    assert rows[["position", "icd10", "is_main", "diagnosis_text"]].values.tolist() == [
        [0, "S72.00", True, "Gãy"],
        [1, "E11.9", False, None],
        [2, "N18.8", False, None],
    ]
