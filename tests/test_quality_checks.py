"""One tiny night where each encounter carries one defect: every check must catch its own.

Each test fails if its check is removed or stops catching the defect. GX runs for real (once per
module: the night is validated once and every test reads the result).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from test_quality_frames import NIGHT, clean_encounter, staged, ts

from expectations.checks import load_checks
from expectations.row_checks import ROW_CHECKS
from expectations.runner import validate_frames
from expectations.suites import SUITE_BUILDERS


def totals(drugs=0.0, supplies=0.0, services=0.0) -> dict:
    """XML1 totals of an encounter whose lines have only THANH_TIEN_BV (= THANH_TIEN_BH)."""
    hospital = drugs + supplies + services
    return {
        "drugs_total_vnd": drugs,
        "supplies_total_vnd": supplies,
        "hospital_total_vnd": hospital,
        "insured_total_vnd": hospital,
        "insurance_paid_vnd": hospital,  # T_TONGCHI_BH - T_BNCCT = hospital - 0
    }


def drug(encounter_id: str, amount: float = 10.0, **overrides) -> dict:
    row = {
        "encounter_id": encounter_id,
        "drug_code": "40.17",
        "drug_name": "Paracetamol",
        "quantity": 1.0,
        "unit_price_vnd": amount,
        "amount_vnd": amount,
        "insured_amount_vnd": amount,
        "patient_paid_vnd": 0.0,
        "patient_copay_vnd": 0.0,
        "other_sources_vnd": 0.0,
        "ordered_at": ts("2026-11-25 09:00"),
    }
    row.update(overrides)
    return row


def service(encounter_id: str, amount: float = 20.0, **overrides) -> dict:
    row = {
        "encounter_id": encounter_id,
        "service_code": "01.0001.1778",
        "quantity": 1.0,
        "unit_price_vnd": amount,
        "amount_vnd": amount,
        "insured_amount_vnd": amount,
        "patient_paid_vnd": 0.0,
        "patient_copay_vnd": 0.0,
        "other_sources_vnd": 0.0,
        "performed_at": ts("2026-11-25 09:30"),
    }
    row.update(overrides)
    return row


def stay(encounter_id: str, visit_type: str = "03", **overrides) -> dict:
    fields = {
        "visit_type": visit_type,
        "admitted_at": ts("2026-11-20 08:00"),
        "inpatient_at": ts("2026-11-20 09:00"),
        "discharged_at": ts("2026-11-25 10:00"),
    }
    return clean_encounter(encounter_id, **{**fields, **overrides})


def paper(encounter_id: str, **overrides) -> dict:
    row = {
        "encounter_id": encounter_id,
        "admitted_at": ts("2026-11-20 08:00"),
        "discharged_at": ts("2026-11-25 10:00"),
    }
    row.update(overrides)
    return row


def clean_night() -> dict[str, pd.DataFrame]:
    """An outpatient visit with a drug and a service, and an inpatient stay with a supply line.

    OK1: drug 10 + service 20 -> T_THUOC 10, T_TONGCHI_BV 30, T_VTYT 0.
    STAY1: drug 15 + supply 5 (cost group 10) -> T_THUOC 15, T_VTYT 5, T_TONGCHI_BV 20.
    """
    return {
        "encounters": staged(
            "encounters",
            [
                clean_encounter("OK1", **totals(drugs=10, services=20)),
                stay("STAY1", **totals(drugs=15, supplies=5)),
            ],
        ),
        "drugs": staged("drugs", [drug("OK1", 10.0), drug("STAY1", 15.0)]),
        "services": staged(
            "services",
            [
                service("OK1", 20.0),
                service("STAY1", 5.0, service_code=None, supply_code="N03.01", cost_group="10"),
            ],
        ),
        "discharge_papers": staged("discharge_papers", [paper("STAY1", issued_on=dt.date(2026, 11, 25))]),
        "summaries": staged("summaries", [paper("STAY1", visit_type="03", result_code="1")]),
        "lab_results": staged(
            "lab_results",
            [
                {
                    "encounter_id": "STAY1",
                    "service_code": "22.0001",
                    "indicator_code": "CHIEU_CAO",
                    "indicator_name": "Chiều cao",
                    "value": "165",
                }
            ],
        ),
        "immunizations": pd.DataFrame(
            {
                "night": [NIGHT],
                "source_file": ["fhir/a.ndjson"],
                "line_number": [1],
                "resource_id": ["imm-1"],
                "citizen_id": ["079090001234"],
                "vaccine_code": ["BCG"],
                "occurred_at": [pd.Timestamp("2026-11-01 09:00")],
                "facility_code": ["94170"],
                "is_active": [True],
            }
        ),
    }


def defect_night() -> dict[str, pd.DataFrame]:
    """One encounter per defect, each named after the check that must catch it."""
    encounters = [
        clean_encounter("LEN", ward_code="123456"),  # MAXA_CU_TRU is 5 characters at most
        clean_encounter("VT", visit_type="99"),
        clean_encounter("RES", result_code="9"),
        clean_encounter("RV", discharge_type_code="7"),
        clean_encounter("SEX", sex_code="4"),
        clean_encounter("CAT", patient_category="1.A"),
        clean_encounter("ICD", main_icd10="A00.5"),  # A00 has .0 .1 .9 only
        clean_encounter("SEC", secondary_icd10=["E11.9", "J06.9", "Q99.99"]),
        clean_encounter("CNT", secondary_icd10=["I10"] * 13),
        clean_encounter("PROC", procedure_icd9=["99.04", "ABC"]),
        clean_encounter("CARD", insurance_card=["DN47979"]),
        clean_encounter("REQ", admitted_at=None),
        clean_encounter("NOMAIN", main_icd10=None),  # and no XML7 to take it from
        clean_encounter("X7", main_icd10=None),  # its XML7 carries S72.00
        clean_encounter("RET", main_icd10="N18.8"),  # retired by WHO in 2010
        clean_encounter("LAMT", **totals(drugs=90)),  # 2 x 50 = 100, the line says 90
        clean_encounter("SUP", **{**totals(supplies=5), "supplies_total_vnd": 7.0}),
        # XML1 T_BNTT 5, lines 0; T_TONGCHI_BV 5 = T_BHTT 0 + T_BNTT 5 holds
        clean_encounter(
            "BNTT",
            **{
                **totals(drugs=5),
                "insured_total_vnd": 0.0,
                "insurance_paid_vnd": 0.0,
                "patient_paid_vnd": 5.0,
            },
        ),
        # XML1 T_BNCCT 3, lines 0; T_BHTT 7 = 10 - 3 and 10 = 7 + 3 hold
        clean_encounter("BNCCT", **{**totals(drugs=10), "patient_copay_vnd": 3.0, "insurance_paid_vnd": 7.0}),
        # XML1 T_NGUONKHAC 4, lines 0; insured 6 = the line's THANH_TIEN_BH; 10 = 6 + 4 holds
        clean_encounter(
            "NGK",
            **{
                **totals(drugs=10),
                "insured_total_vnd": 6.0,
                "insurance_paid_vnd": 6.0,
                "other_sources_vnd": 4.0,
            },
        ),
        # T_BHTT 8 but T_TONGCHI_BH 10 - T_BNCCT 0 = 10; T_TONGCHI_BV 10 = 8 + T_BNTT 2 holds
        clean_encounter("IDB", **{**totals(drugs=10), "insurance_paid_vnd": 8.0, "patient_paid_vnd": 2.0}),
        # T_TONGCHI_BV 12 but T_BHTT 10 + 0 + 0 + 0 = 10; every sum holds (line 12, insured 10)
        clean_encounter("IDH", **{**totals(drugs=12), "insured_total_vnd": 10.0, "insurance_paid_vnd": 10.0}),
        clean_encounter("LTO", **totals(drugs=10)),  # the drug is given before it is ordered
        clean_encounter("TDAYS", visit_type="09", treatment_days=1),  # "09": SO_NGAY_DTRI = 0
        clean_encounter("DUP", insurance_card=["DN4797909999999"]),
        clean_encounter("DUP2", insurance_card=["DN4797909999999"]),  # same card, dates, code
        clean_encounter("STT", **totals(drugs=20)),  # two drug lines with STT 1
        clean_encounter("MNH", **totals(drugs=10)),
        clean_encounter("PV", **totals(drugs=10)),
        clean_encounter("DEMO"),  # its referral names another person
        clean_encounter("EXP", patient_name=None),
        stay("INP", inpatient_at=None),
        stay("NOPAPER", visit_type="04"),
        stay("NOSUM"),
        clean_encounter("DBA", discharged_at=ts("2026-11-25 07:00")),  # admitted 08:15
        stay("PDBA"),
        clean_encounter("BIRTH", birth_date=dt.date(2026, 11, 26), citizen_id=None),  # admitted 2026-11-25
        stay("INWIN", inpatient_at=ts("2026-11-19 08:00")),  # before admission 11-20
        clean_encounter("FUT", discharged_at=ts("2026-11-27 09:00")),  # night is 11-26
        clean_encounter("LINEFUT", **totals(drugs=10)),
        clean_encounter("W", weight_kg=900.0),
        stay("H"),
        clean_encounter("Q", **totals(drugs=-10)),  # quantity -1 x 10 = -10
        clean_encounter("P", **totals(services=0)),
        clean_encounter("CID", citizen_id="079190001234"),  # digit 4 = 1: a woman; sex_code 1
        clean_encounter("CV", card_valid_to=[dt.date(2025, 12, 31)]),
        clean_encounter("TOT", **totals(drugs=100)),  # the drug line says 90
        clean_encounter("REF"),
        clean_encounter("DRN", **totals(drugs=10)),
    ]
    stays_with_papers = ["INP", "NOSUM", "PDBA", "INWIN", "H"]
    papers = [paper(e) for e in stays_with_papers if e != "PDBA"]
    papers.append(paper("PDBA", discharged_at=ts("2026-11-19 10:00")))
    papers.append(paper("X7", main_icd10="S72.00", discharge_diagnosis="Gãy kín cổ xương đùi"))
    summaries = [paper(e) for e in ["INP", "NOPAPER", "PDBA", "INWIN", "H"]]
    return {
        "encounters": staged("encounters", encounters),
        "drugs": staged(
            "drugs",
            [
                drug("LINEFUT", 10.0, ordered_at=ts("2026-12-01 09:00")),
                drug("Q", -10.0, quantity=-1.0, unit_price_vnd=10.0),
                drug("TOT", 90.0),
                drug("ORPHAN", 5.0),
                drug("DRN", 10.0, drug_name=None),
                drug("LAMT", 90.0, quantity=2.0, unit_price_vnd=50.0),
                drug("BNTT", 5.0, insured_amount_vnd=0.0),
                drug("BNCCT", 10.0),
                drug("NGK", 10.0, insured_amount_vnd=6.0),
                drug("IDB", 10.0, patient_paid_vnd=2.0),
                drug("IDH", 12.0, insured_amount_vnd=10.0),
                drug("LTO", 10.0, administered_at=ts("2026-11-25 08:30")),  # ordered 09:00
                drug("STT", 10.0, line_number=1),
                drug("STT", 10.0, line_number=1),
                drug("MNH", 10.0, cost_group="25"),
                drug("PV", 10.0, coverage_scope="7"),
            ],
        ),
        "services": staged(
            "services",
            [
                service("P", 0.0, unit_price_vnd=0.0),
                service("SUP", 5.0, service_code=None, supply_code="N03.01", cost_group="10"),
            ],
        ),
        "discharge_papers": staged("discharge_papers", papers),
        "summaries": staged("summaries", summaries),
        "lab_results": staged(
            "lab_results",
            [
                {
                    "encounter_id": "H",
                    "service_code": "22.0001",
                    "indicator_code": "CHIEU_CAO",
                    "indicator_name": "Chiều cao",
                    "value": "500",
                }
            ],
        ),
        "referrals": staged(
            "referrals",
            [
                {"encounter_id": "REF", "to_facility": "79001", "main_icd10": "A00.5"},
                {"encounter_id": "DEMO", "to_facility": "79001", "patient_name": "Trần Thị Bình"},
            ],
        ),
        "immunizations": pd.DataFrame(
            {
                "night": [NIGHT],
                "source_file": ["fhir/a.ndjson"],
                "line_number": [3],
                "resource_id": ["imm-9"],
                "citizen_id": ["12345"],
                "vaccine_code": ["BCG"],
                "occurred_at": [pd.Timestamp("2026-11-01 09:00")],
                "facility_code": ["94170"],
                "is_active": [True],
            }
        ),
    }


@pytest.fixture(scope="module")
def defects():
    return validate_frames(defect_night(), NIGHT)


@pytest.fixture(scope="module")
def clean():
    return validate_frames(clean_night(), NIGHT)


def test_a_clean_night_has_no_finding(clean):
    assert clean.findings.empty, clean.findings.to_dict("records")
    statuses = set(clean.checks["status"])
    assert statuses <= {"passed", "not_applicable"}


def test_the_clean_night_exercises_the_cross_table_checks(clean):
    evaluated = clean.checks.set_index(["check_id", "dataset"])["evaluated"]
    assert evaluated[("integrity.hospital_total_sum", "encounters")] == 2
    assert evaluated[("integrity.supplies_total_sum", "encounters")] == 2
    assert evaluated[("integrity.line_amount", "drugs")] == 2
    assert evaluated[("conformance.main_icd10_valid", "encounters")] == 2
    assert evaluated[("completeness.summary_present", "encounters")] == 1
    assert evaluated[("plausibility.height_range", "lab_results")] == 1


CAUGHT = [
    # (check_id, encounter, dataset, column, severity, reason)
    ("conformance.max_length", "LEN", "encounters", "ward_code", "warning", "value_too_long"),
    ("conformance.visit_type_code", "VT", "encounters", "visit_type", "warning", "code_not_in_list"),
    ("conformance.result_code", "RES", "encounters", "result_code", "warning", "code_not_in_list"),
    (
        "conformance.discharge_type_code",
        "RV",
        "encounters",
        "discharge_type_code",
        "warning",
        "code_not_in_list",
    ),
    ("conformance.sex_code", "SEX", "encounters", "sex_code", "warning", "code_not_in_list"),
    (
        "conformance.patient_category_shape",
        "CAT",
        "encounters",
        "patient_category",
        "warning",
        "code_not_in_list",
    ),
    ("conformance.main_icd10_valid", "ICD", "encounters", "main_icd10", "blocking", "invalid_icd10"),
    (
        "conformance.secondary_icd10_valid",
        "SEC",
        "encounters",
        "secondary_icd10",
        "warning",  # the code is left out of the book's codes; the visit is right
        "invalid_secondary_icd10",
    ),
    (
        "conformance.secondary_icd10_count",
        "CNT",
        "encounters",
        "secondary_icd10",
        "warning",
        "too_many_codes",
    ),
    ("conformance.paper_icd10_valid", "REF", "referrals", "main_icd10", "warning", "invalid_icd10"),
    (
        "conformance.procedure_icd9_shape",
        "PROC",
        "encounters",
        "procedure_icd9",
        "warning",
        "invalid_icd9_procedure",
    ),
    (
        "conformance.insurance_card_shape",
        "CARD",
        "encounters",
        "insurance_card",
        "warning",
        "invalid_insurance_card",
    ),
    (
        "conformance.fhir_citizen_id_shape",
        "imm-9",
        "immunizations",
        "citizen_id",
        "warning",
        "invalid_citizen_id",
    ),
    (
        "completeness.encounter_required_fields",
        "REQ",
        "encounters",
        "admitted_at",
        "blocking",
        "missing_required_field",
    ),
    (
        "completeness.main_diagnosis_present",
        "NOMAIN",
        "encounters",
        "main_icd10",
        "blocking",
        "missing_required_field",
    ),
    ("conformance.main_icd10_from_xml7", "X7", "encounters", "main_icd10", "warning", "main_icd10_from_xml7"),
    ("conformance.icd10_retired", "RET", "encounters", "main_icd10", "warning", "icd10_retired"),
    (
        "completeness.encounter_expected_fields",
        "EXP",
        "encounters",
        "patient_name",
        "warning",
        "missing_required_field",
    ),
    (
        "completeness.inpatient_fields",
        "INP",
        "encounters",
        "inpatient_at",
        "warning",
        "missing_required_field",
    ),
    ("completeness.line_required_fields", "DRN", "drugs", "drug_name", "warning", "missing_required_field"),
    (
        "completeness.discharge_paper_present",
        "NOPAPER",
        "encounters",
        "visit_type",
        "blocking",
        "missing_discharge_paper",
    ),
    ("completeness.summary_present", "NOSUM", "encounters", "visit_type", "blocking", "missing_summary"),
    (
        "plausibility.discharge_before_admission",
        "DBA",
        "encounters",
        "discharged_at",
        "blocking",
        "discharge_before_admission",
    ),
    (
        "plausibility.paper_discharge_before_admission",
        "PDBA",
        "discharge_papers",
        "discharged_at",
        "warning",
        "discharge_before_admission",
    ),
    (
        "plausibility.birth_before_admission",
        "BIRTH",
        "encounters",
        "birth_date",
        "warning",
        "birth_after_admission",
    ),
    (
        "plausibility.inpatient_within_stay",
        "INWIN",
        "encounters",
        "inpatient_at",
        "warning",
        "implausible_date",
    ),
    (
        "plausibility.encounter_not_after_night",
        "FUT",
        "encounters",
        "discharged_at",
        "blocking",
        "date_after_night",
    ),
    ("plausibility.line_not_after_night", "LINEFUT", "drugs", "ordered_at", "warning", "date_after_night"),
    ("plausibility.weight_range", "W", "encounters", "weight_kg", "warning", "implausible_measurement"),
    ("plausibility.height_range", "H", "lab_results", "value", "warning", "implausible_measurement"),
    ("plausibility.positive_quantity", "Q", "drugs", "quantity", "warning", "non_positive_amount"),
    ("plausibility.positive_price", "P", "services", "unit_price_vnd", "warning", "non_positive_amount"),
    (
        "plausibility.citizen_id_agrees",
        "CID",
        "encounters",
        "citizen_id",
        "warning",
        "citizen_id_inconsistent",
    ),
    (
        "plausibility.card_valid_on_visit",
        "CV",
        "encounters",
        "card_valid_to",
        "warning",
        "card_not_valid_on_visit",
    ),
    ("integrity.line_item_has_encounter", "ORPHAN", "drugs", "encounter_id", "blocking", "missing_xml1"),
    # money: warnings, one check per relation (issue 15)
    ("integrity.drugs_total_sum", "TOT", "encounters", "drugs_total_vnd", "warning", "totals_mismatch"),
    ("integrity.hospital_total_sum", "TOT", "encounters", "hospital_total_vnd", "warning", "totals_mismatch"),
    ("integrity.insured_total_sum", "TOT", "encounters", "insured_total_vnd", "warning", "totals_mismatch"),
    ("integrity.supplies_total_sum", "SUP", "encounters", "supplies_total_vnd", "warning", "totals_mismatch"),
    ("integrity.patient_paid_sum", "BNTT", "encounters", "patient_paid_vnd", "warning", "totals_mismatch"),
    ("integrity.patient_copay_sum", "BNCCT", "encounters", "patient_copay_vnd", "warning", "totals_mismatch"),
    ("integrity.other_sources_sum", "NGK", "encounters", "other_sources_vnd", "warning", "totals_mismatch"),
    (
        "integrity.insurance_paid_identity",
        "IDB",
        "encounters",
        "insurance_paid_vnd",
        "warning",
        "totals_identity_mismatch",
    ),
    (
        "integrity.hospital_total_identity",
        "IDH",
        "encounters",
        "hospital_total_vnd",
        "warning",
        "totals_identity_mismatch",
    ),
    ("integrity.line_amount", "LAMT", "drugs", "amount_vnd", "warning", "line_amount_mismatch"),
    # rules of the public claim checkers
    ("plausibility.line_time_order", "LTO", "drugs", "administered_at", "warning", "order_after_execution"),
    ("plausibility.line_within_stay", "LINEFUT", "drugs", "ordered_at", "warning", "line_outside_stay"),
    (
        "plausibility.treatment_days",
        "TDAYS",
        "encounters",
        "treatment_days",
        "warning",
        "treatment_days_mismatch",
    ),
    ("integrity.duplicate_claim", "DUP", "encounters", "insurance_card", "warning", "duplicate_claim"),
    ("conformance.unique_line_number", "STT", "drugs", "line_number", "warning", "duplicate_line_number"),
    ("conformance.cost_group_code", "MNH", "drugs", "cost_group", "warning", "code_not_in_list"),
    ("conformance.coverage_scope_code", "PV", "drugs", "coverage_scope", "warning", "code_not_in_list"),
    (
        "conformance.paper_demographics",
        "DEMO",
        "referrals",
        "patient_name",
        "warning",
        "paper_demographics_differ",
    ),
]
# a duplicate claim has two sides: both are listed
ALSO_CAUGHT = {"integrity.duplicate_claim": {"DUP2"}}


def test_every_configured_check_has_a_defect_case_here():
    assert {c[0] for c in CAUGHT} == set(load_checks().checks)


@pytest.mark.parametrize(("check_id", "encounter", "dataset", "column", "severity", "reason"), CAUGHT)
def test_each_check_catches_its_defect(defects, check_id, encounter, dataset, column, severity, reason):
    f = defects.findings
    hit = f[(f.check_id == check_id) & (f.encounter_id == encounter)]
    assert len(hit) >= 1, f"{check_id} did not catch {encounter}"
    assert set(hit.dataset) == {dataset}
    assert column in set(hit.column)
    assert set(hit.severity) == {severity} and set(hit.reason) == {reason}
    assert set(hit.stage) == {"quality"} and set(hit.night) == {NIGHT}


@pytest.mark.parametrize(("check_id", "encounter", "dataset", "column", "severity", "reason"), CAUGHT)
def test_each_check_stays_silent_on_the_other_encounters(
    defects, check_id, encounter, dataset, column, severity, reason
):
    f = defects.findings
    others = set(f[f.check_id == check_id].encounter_id) - {encounter} - ALSO_CAUGHT.get(check_id, set())
    assert not others, f"{check_id} also flagged {others}"


def test_an_invalid_secondary_code_is_reported_alone_with_its_value(defects):
    f = defects.findings
    hit = f[(f.check_id == "conformance.secondary_icd10_valid")]
    assert hit["value"].tolist() == ["Q99.99"]


def test_each_money_finding_names_its_relation_and_the_difference(defects):
    # drug line 90, XML1 says T_THUOC 100, T_TONGCHI_BV 100, T_TONGCHI_BH 100 (totals(drugs=100)):
    # three sum relations fail by 10; T_BHTT = T_TONGCHI_BH - T_BNCCT (100 = 100 - 0) holds.
    f = defects.findings
    hit = f[(f.encounter_id == "TOT") & (f.reason == "totals_mismatch")].set_index("check_id")["value"]
    assert hit.to_dict() == {
        "integrity.drugs_total_sum": "T_THUOC=100 vs Σ XML2 THANH_TIEN_BV=90 (diff 10)",
        "integrity.hospital_total_sum": "T_TONGCHI_BV=100 vs Σ XML2 + XML3 THANH_TIEN_BV=90 (diff 10)",
        "integrity.insured_total_sum": "T_TONGCHI_BH=100 vs Σ XML2 + XML3 THANH_TIEN_BH=90 (diff 10)",
    }
    line = f[f.check_id == "integrity.line_amount"]["value"].tolist()
    assert line == ["THANH_TIEN_BV=90 vs SO_LUONG×DON_GIA=2×50=100 (diff -10)"]
    idb = f[f.check_id == "integrity.insurance_paid_identity"]["value"].tolist()
    assert idb == ["T_BHTT=8 vs T_TONGCHI_BH − T_BNCCT=10 (diff -2)"]
    idh = f[f.check_id == "integrity.hospital_total_identity"]["value"].tolist()
    assert idh == ["T_TONGCHI_BV=12 vs T_BHTT + T_BNCCT + T_BNTT + T_NGUONKHAC=10 (diff 2)"]


def test_no_money_finding_blocks_an_encounter(defects):
    f = defects.findings
    money = f[f.reason.isin(["totals_mismatch", "totals_identity_mismatch", "line_amount_mismatch"])]
    assert len(money) >= 10 and set(money.severity) == {"warning"}


def test_totals_within_one_vnd_are_accepted():
    night = clean_night()
    night["encounters"].loc[0, "hospital_total_vnd"] = 30.9  # lines: 30
    result = validate_frames(night, NIGHT)
    assert result.findings.empty


def test_line_findings_keep_the_staged_row_index_and_encounter_findings_have_none(defects):
    f = defects.findings
    line = f[(f.check_id == "integrity.line_item_has_encounter")]
    assert line["row_index"].tolist() == [3]  # ORPHAN is the 4th drug row
    enc = f[f.dataset == "encounters"]
    assert enc["row_index"].isna().all()


def test_every_check_has_an_implementation_and_every_implementation_a_policy():
    config = load_checks()
    gx_ids = {rule.check_id for build in SUITE_BUILDERS.values() for rule in build(config, NIGHT)}
    row_ids = set(ROW_CHECKS)
    for check in config.checks.values():
        assert check.id in (gx_ids if check.engine == "gx" else row_ids), check.id
    assert gx_ids | row_ids == set(config.checks)
    assert not gx_ids & row_ids


def test_the_check_configuration_is_versioned():
    assert load_checks().version


def test_a_height_in_xml1_du_phong_outside_human_range_is_reported():
    from expectations.row_checks import check_height_range
    from expectations.runner import prepare_frame

    # 165 cm fine, 1650 (mm typed as cm) out of range, "ghi chú" is not a number: not evaluated
    enc = staged(
        "encounters",
        [
            clean_encounter("a", reserve="165"),
            clean_encounter("b", reserve="1650"),
            clean_encounter("c", reserve="ghi chú"),
        ],
    )
    outcome = check_height_range(
        {"encounters": prepare_frame("encounters", enc)}, NIGHT, load_checks()["plausibility.height_range"]
    )
    assert outcome.failures["value"].tolist() == ["1650"]
    assert outcome.evaluated == {"encounters": 2}


def test_card_periods_pair_by_position_and_open_ends_cover_the_visit():
    from expectations.row_checks import check_card_valid_on_visit
    from expectations.runner import prepare_frame

    d = dt.date
    # every row is admitted on 2026-11-25
    rows = [
        # a card changed: 2025 period does not cover, 2026 period does -> passes
        clean_encounter(
            "TWO",
            card_valid_from=[d(2025, 1, 1), d(2026, 1, 1)],
            card_valid_to=[d(2025, 12, 31), d(2026, 12, 31)],
        ),
        # no end dates at all: open periods, starting before the visit -> passes
        clean_encounter("OPEN", card_valid_from=[d(2026, 1, 1)], card_valid_to=[]),
        # one end for two starts: only the first period counts (2025) -> fails
        clean_encounter(
            "SHORT", card_valid_from=[d(2025, 1, 1), d(2026, 1, 1)], card_valid_to=[d(2025, 12, 31)]
        ),
        # starts after the visit -> fails
        clean_encounter("LATE", card_valid_from=[d(2026, 11, 26)], card_valid_to=[d(2026, 12, 31)]),
        # ends on the visit day itself -> passes
        clean_encounter("EDGE", card_valid_from=[d(2026, 1, 1)], card_valid_to=[d(2026, 11, 25)]),
        # no period: not evaluated
        clean_encounter("NONE", card_valid_from=[], card_valid_to=[]),
    ]
    enc = prepare_frame("encounters", staged("encounters", rows))
    outcome = check_card_valid_on_visit(
        {"encounters": enc}, NIGHT, load_checks()["plausibility.card_valid_on_visit"]
    )
    failing = enc.set_index("_row_id").loc[outcome.failures["_row_id"], "encounter_id"].tolist()
    assert sorted(failing) == ["LATE", "SHORT"]
    assert outcome.evaluated == {"encounters": 5}
    assert outcome.failures["value"].tolist() == ["2026-11-25", "2026-11-25"]


def test_list_codes_are_judged_on_their_stripped_shape():
    from expectations.row_checks import check_insurance_card_shape, check_procedure_icd9_shape
    from expectations.runner import prepare_frame

    rows = [
        clean_encounter(
            "A", insurance_card=[" DN4797909000123 ", "0790900012"], procedure_icd9=["36.10", "3610"]
        ),
        clean_encounter(
            "B", insurance_card=["DN6797909000123", "79090001"], procedure_icd9=["99.0A", " 99.04"]
        ),
    ]
    enc = prepare_frame("encounters", staged("encounters", rows))
    config = load_checks()
    cards = check_insurance_card_shape({"encounters": enc}, NIGHT, config["conformance.insurance_card_shape"])
    # level 6 does not exist; 8 digits is neither shape
    assert cards.failures["value"].tolist() == ["DN6797909000123", "79090001"]
    procedures = check_procedure_icd9_shape(
        {"encounters": enc}, NIGHT, config["conformance.procedure_icd9_shape"]
    )
    assert procedures.failures["value"].tolist() == ["99.0A"]
    assert procedures.evaluated == {"encounters": 2}
